// expect: O(n²)  max: 32768
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    unsigned long long n, seed, x;
    if (scanf("%llu %llu", &n, &seed) != 2) return 1;
    unsigned *a = malloc(n * sizeof *a + 1);
    if (!a) return 1;
    x = seed;
    for (size_t i = 0; i < n; i++) { x = x * 6364136223846793005ULL + 1442695040888963407ULL; a[i] = (unsigned)(x >> 33); }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j + 1 < n - i; j++)
            if (a[j] > a[j + 1]) { unsigned t = a[j]; a[j] = a[j + 1]; a[j + 1] = t; }
    printf("%u\n", n ? a[n / 2] : 0);
    return 0;
}
