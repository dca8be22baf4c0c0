// expect: O(n)  max: 67108864
#include <stdio.h>
int main(void) {
    unsigned long long n, seed, x, s = 0;
    if (scanf("%llu %llu", &n, &seed) != 2) return 1;
    x = seed;
    for (unsigned long long i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        s += x >> 40;
    }
    printf("%llu\n", s);
    return 0;
}
