function merge_sort(nums) {
  if (nums.length <= 1) return nums.slice();
  const mid = nums.length >> 1;
  const left = merge_sort(nums.slice(0, mid)), right = merge_sort(nums.slice(mid));
  const out = [];
  let i = 0, j = 0;
  while (i < left.length && j < right.length) out.push(left[i] <= right[j] ? left[i++] : right[j++]);
  return out.concat(left.slice(i), right.slice(j));
}
