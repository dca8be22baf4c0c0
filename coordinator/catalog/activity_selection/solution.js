function max_activities(intervals) {
  const sorted = intervals.slice().sort((x, y) => x[1] - y[1]);
  let count = 0, end = -Infinity;
  for (const [s, e] of sorted) if (s >= end) { count++; end = e; }
  return count;
}
