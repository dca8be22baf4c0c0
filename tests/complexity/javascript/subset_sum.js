// expect: O(2ⁿ)  input: number  memory: O(1)
function subsetSum(n) {
  // Items 1..n, target -1: no subset reaches it, so every one of the 2^n is tried.
  const count = (i, remaining) => (i === n ? (remaining === 0 ? 1 : 0) : count(i + 1, remaining - (i + 1)) + count(i + 1, remaining));
  return count(0, -1);
}
