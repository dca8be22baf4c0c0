/* Squares in 32 bits: right on the small subtask, wrapped around (and nonsense) on the
   large one. */
#include <math.h>
#include <stdio.h>
int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    for (int i = 0; i < n; i++) {
        unsigned a, b;
        if (scanf("%u %u", &a, &b) != 2) return 1;
        int s = (int)(a * a + b * b);
        printf("%.6f\n", sqrt((double)s));
    }
    return 0;
}
