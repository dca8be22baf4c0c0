function dfs_order(n, edges, start) {
  const adj = Array.from({ length: n }, () => []);
  for (const [u, v] of edges) adj[u].push(v);
  for (const a of adj) a.sort((x, y) => x - y);
  const seen = new Array(n).fill(false), order = [];
  const visit = (u) => {
    seen[u] = true;
    order.push(u);
    for (const v of adj[u]) if (!seen[v]) visit(v);
  };
  visit(start);
  return order;
}
