// expect: O(n log n)  max: 2097152
#include <stdio.h>
#include <stdlib.h>
static void sift(unsigned *a, size_t root, size_t end) {
    while (2 * root + 1 < end) {
        size_t child = 2 * root + 1;
        if (child + 1 < end && a[child] < a[child + 1]) child++;
        if (a[root] >= a[child]) return;
        unsigned t = a[root]; a[root] = a[child]; a[child] = t;
        root = child;
    }
}
int main(void) {
    unsigned long long n, seed, x;
    if (scanf("%llu %llu", &n, &seed) != 2) return 1;
    unsigned *a = malloc(n * sizeof *a + 1);
    if (!a) return 1;
    x = seed;
    for (size_t i = 0; i < n; i++) { x = x * 6364136223846793005ULL + 1442695040888963407ULL; a[i] = (unsigned)(x >> 33); }
    for (size_t s = n / 2; s-- > 0;) sift(a, s, n);
    for (size_t end = n; end-- > 1;) { unsigned t = a[0]; a[0] = a[end]; a[end] = t; sift(a, 0, end); }
    printf("%u\n", n ? a[n / 2] : 0);
    return 0;
}
