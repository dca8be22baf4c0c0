// expect: O(2ⁿ)  sizes: 10 12 14 16 18 20 22 24 26 28
#include <stdio.h>
static unsigned long long n;
// Items 1..n, target -1: no subset reaches it, so every one of the 2^n is tried.
static unsigned long long count(unsigned long long i, long long remaining) {
    if (i == n) return remaining == 0;
    return count(i + 1, remaining - (long long)(i + 1)) + count(i + 1, remaining);
}
int main(void) {
    unsigned long long seed;
    if (scanf("%llu %llu", &n, &seed) != 2 || n > 40) return 1;
    printf("%llu\n", count(0, -1));
    return 0;
}
