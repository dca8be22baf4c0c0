// expect: O(n²)  input: array  memory: O(1)
function pairCount(arr) {
  let count = 0;
  for (let i = 0; i < arr.length; i++) {
    for (let j = i + 1; j < arr.length; j++) if ((arr[i] + arr[j]) % 3 === 0) count++;
  }
  return count;
}
