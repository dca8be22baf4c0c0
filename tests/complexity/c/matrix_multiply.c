// expect: O(n³)  input: number  memory: O(n²)
#include <stdlib.h>

long long matrix_multiply(long long n) {
    long long *a = malloc((n * n + 1) * sizeof *a), *b = malloc((n * n + 1) * sizeof *b);
    long long trace = 0;
    if (!a || !b) { free(a); free(b); return -1; }
    for (long long i = 0; i < n; i++)
        for (long long j = 0; j < n; j++) {
            a[i * n + j] = (i * 31 + j * 17) % 10;
            b[i * n + j] = (i * 7 + j * 13) % 10;
        }
    for (long long i = 0; i < n; i++)
        for (long long j = 0; j < n; j++) {
            long long s = 0;
            for (long long k = 0; k < n; k++) s += a[i * n + k] * b[k * n + j];
            if (i == j) trace += s;
        }
    free(a);
    free(b);
    return trace;
}
