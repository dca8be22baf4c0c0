// expect: O(1)  input: array
function constant(arr) {
  return arr.length ? (arr[0] * 2 + arr[arr.length - 1]) % 7 : 0;
}
