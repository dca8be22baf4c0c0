// expect: O(2ⁿ)  input: number  memory: O(n)
#include <stdlib.h>

static long long count(const long long *items, long long n, long long i, long long remaining) {
    if (i == n) return remaining == 0;
    return count(items, n, i + 1, remaining - items[i]) + count(items, n, i + 1, remaining);
}

// Items 1..n, target -1: no subset reaches it, so every one of the 2^n is tried.
long long subset_sum(long long n) {
    long long *items = malloc((n + 1) * sizeof *items);
    if (!items) return -1;
    for (long long i = 0; i < n; i++) items[i] = i + 1;
    long long c = count(items, n, 0, -1);
    free(items);
    return c;
}
