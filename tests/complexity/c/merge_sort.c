// expect: O(n log n)  input: array  memory: O(n)
#include <stdlib.h>
#include <string.h>

static void sort(long long *a, long long *tmp, long long n) {
    if (n < 2) return;
    long long mid = n / 2;
    sort(a, tmp, mid);
    sort(a + mid, tmp, n - mid);
    long long i = 0, j = mid, k = 0;
    while (i < mid && j < n) tmp[k++] = a[i] <= a[j] ? a[i++] : a[j++];
    while (i < mid) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

long long merge_sort(long long *arr, long long n) {
    long long *tmp = malloc((n + 1) * sizeof *tmp);
    if (!tmp) return -1;
    sort(arr, tmp, n);
    free(tmp);
    return n ? arr[n / 2] : 0;
}
