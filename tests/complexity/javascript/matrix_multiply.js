// expect: O(n³)  input: number  memory: O(n²)
function matrixMultiply(n) {
  const a = [], b = [];
  for (let i = 0; i < n; i++) {
    a.push([]); b.push([]);
    for (let j = 0; j < n; j++) { a[i].push((i * 31 + j * 17) % 10); b[i].push((i * 7 + j * 13) % 10); }
  }
  let trace = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i][k] * b[k][j];
      if (i === j) trace += s;
    }
  }
  return trace;
}
