// expect: O(n log n)  input: array  memory: O(1)
function heapSort(arr) {
  const n = arr.length;
  const sift = (root, end) => {
    while (2 * root + 1 < end) {
      let child = 2 * root + 1;
      if (child + 1 < end && arr[child] < arr[child + 1]) child++;
      if (arr[root] >= arr[child]) return;
      [arr[root], arr[child]] = [arr[child], arr[root]];
      root = child;
    }
  };
  for (let s = (n >> 1) - 1; s >= 0; s--) sift(s, n);
  for (let end = n - 1; end > 0; end--) {
    [arr[0], arr[end]] = [arr[end], arr[0]];
    sift(0, end);
  }
  return arr;
}
