function quick_sort(nums) {
  const a = nums.slice();
  const sort = (lo, hi) => {
    if (lo >= hi) return;
    const pivot = a[(lo + hi) >> 1];
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) { [a[i], a[j]] = [a[j], a[i]]; i++; j--; }
    }
    sort(lo, j);
    sort(i, hi);
  };
  sort(0, a.length - 1);
  return a;
}
