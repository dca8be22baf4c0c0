/* 32-bit addition: right on small numbers, wrong on 1.5e9 + 1.5e9. */
#include <stdio.h>
int main(void) {
    int a, b;
    if (scanf("%d %d", &a, &b) != 2) return 1;
    printf("%d\n", (int)((unsigned)a + (unsigned)b));
    return 0;
}
