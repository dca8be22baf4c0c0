function coin_change(coins, amount) {
  const inf = amount + 1;
  const best = [0].concat(new Array(amount).fill(inf));
  for (let a = 1; a <= amount; a++) {
    for (const c of coins) if (c <= a && best[a - c] + 1 < best[a]) best[a] = best[a - c] + 1;
  }
  return best[amount] === inf ? -1 : best[amount];
}
