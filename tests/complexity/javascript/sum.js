// expect: O(n)  input: array  memory: O(1)
function total(arr) {
  let s = 0;
  for (let i = 0; i < arr.length; i++) s += arr[i];
  return s;
}
