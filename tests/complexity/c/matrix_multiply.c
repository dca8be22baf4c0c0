// expect: O(n³)  max: 512
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    unsigned long long n, seed;
    if (scanf("%llu %llu", &n, &seed) != 2) return 1;
    unsigned *a = malloc(n * n * sizeof *a + 1), *b = malloc(n * n * sizeof *b + 1);
    if (!a || !b) return 1;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) { a[i * n + j] = (i * 31 + j * 17 + seed) % 10; b[i * n + j] = (i * 7 + j * 13) % 10; }
    unsigned long long trace = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            unsigned long long s = 0;
            for (size_t k = 0; k < n; k++) s += a[i * n + k] * b[k * n + j];
            if (i == j) trace += s;
        }
    printf("%llu\n", trace);
    return 0;
}
