function longest_common_prefix(words) {
  if (words.length === 0) return "";
  const first = words[0];
  for (let i = 0; i < first.length; i++) {
    for (const w of words.slice(1)) if (i >= w.length || w[i] !== first[i]) return first.slice(0, i);
  }
  return first;
}
