// expect: O(n log n)  input: array  memory: O(1)
static void sift(long long *a, long long root, long long end) {
    while (2 * root + 1 < end) {
        long long child = 2 * root + 1;
        if (child + 1 < end && a[child] < a[child + 1]) child++;
        if (a[root] >= a[child]) return;
        long long t = a[root]; a[root] = a[child]; a[child] = t;
        root = child;
    }
}

long long heap_sort(long long *arr, long long n) {
    for (long long s = n / 2 - 1; s >= 0; s--) sift(arr, s, n);
    for (long long end = n - 1; end > 0; end--) {
        long long t = arr[0]; arr[0] = arr[end]; arr[end] = t;
        sift(arr, 0, end);
    }
    return n ? arr[n / 2] : 0;
}
