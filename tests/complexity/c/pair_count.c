// expect: O(n²)  max: 32768
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    unsigned long long n, seed, x, count = 0;
    if (scanf("%llu %llu", &n, &seed) != 2) return 1;
    unsigned *a = malloc(n * sizeof *a + 1);
    if (!a) return 1;
    x = seed;
    for (size_t i = 0; i < n; i++) { x = x * 6364136223846793005ULL + 1442695040888963407ULL; a[i] = (unsigned)(x >> 33); }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            count += (a[i] + a[j]) % 3 == 0;
    printf("%llu\n", count);
    return 0;
}
