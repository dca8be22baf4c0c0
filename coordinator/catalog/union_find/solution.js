function count_components(n, edges) {
  const parent = Array.from({ length: n }, (_, i) => i), size = new Array(n).fill(1);
  const find = (x) => {
    while (parent[x] !== x) { parent[x] = parent[parent[x]]; x = parent[x]; }
    return x;
  };
  let components = n;
  for (const [u, v] of edges) {
    let a = find(u), b = find(v);
    if (a === b) continue;
    if (size[a] < size[b]) [a, b] = [b, a];
    parent[b] = a;
    size[a] += size[b];
    components--;
  }
  return components;
}
