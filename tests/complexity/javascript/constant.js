// expect: O(1)  input: array  memory: O(1)
function constant(arr) {
  return arr.length ? (arr[0] * 2 + arr[arr.length - 1]) % 7 : 0;
}
