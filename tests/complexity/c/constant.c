// expect: O(1)  max: 16777216
// A fixed amount of work whatever n is.
#include <stdio.h>
int main(void) {
    unsigned long long n, seed, x;
    if (scanf("%llu %llu", &n, &seed) != 2) return 1;
    x = seed ^ n;
    for (int i = 0; i < 2000000; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    printf("%llu\n", x);
    return 0;
}
