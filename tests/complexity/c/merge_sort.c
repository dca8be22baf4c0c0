// expect: O(n log n)  max: 4194304
#include <stdio.h>
#include <stdlib.h>
static void sort(unsigned *a, unsigned *tmp, size_t n) {
    if (n < 2) return;
    size_t mid = n / 2, i = 0, j = mid, k = 0;
    sort(a, tmp, mid);
    sort(a + mid, tmp, n - mid);
    while (i < mid && j < n) tmp[k++] = a[i] <= a[j] ? a[i++] : a[j++];
    while (i < mid) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    for (k = 0; k < n; k++) a[k] = tmp[k];
}
int main(void) {
    unsigned long long n, seed, x;
    if (scanf("%llu %llu", &n, &seed) != 2) return 1;
    unsigned *a = malloc(n * sizeof *a + 1), *tmp = malloc(n * sizeof *tmp + 1);
    if (!a || !tmp) return 1;
    x = seed;
    for (size_t i = 0; i < n; i++) { x = x * 6364136223846793005ULL + 1442695040888963407ULL; a[i] = (unsigned)(x >> 33); }
    sort(a, tmp, n);
    printf("%u\n", n ? a[n / 2] : 0);
    return 0;
}
