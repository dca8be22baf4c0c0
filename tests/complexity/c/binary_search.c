// expect: O(log n)  max: 16777216
// 200000 searches in the sorted implicit array a[i] = 3i + 1 of n elements.
#include <stdio.h>
int main(void) {
    unsigned long long n, seed, x, found = 0;
    if (scanf("%llu %llu", &n, &seed) != 2 || n == 0) return 1;
    x = seed;
    for (int q = 0; q < 200000; q++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        unsigned long long target = 3 * ((x >> 17) % n) + 1;
        long long lo = 0, hi = (long long)n - 1;
        while (lo <= hi) {
            long long mid = lo + (hi - lo) / 2;
            unsigned long long v = 3 * (unsigned long long)mid + 1;
            if (v == target) { found += mid; break; }
            if (v < target) lo = mid + 1; else hi = mid - 1;
        }
    }
    printf("%llu\n", found);
    return 0;
}
