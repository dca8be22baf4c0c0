#include <cmath>
#include <cstdio>
int main() {
    int n;
    if (std::scanf("%d", &n) != 1) return 1;
    for (int i = 0; i < n; i++) {
        long long a, b;
        if (std::scanf("%lld %lld", &a, &b) != 2) return 1;
        std::printf("%.10f\n", std::hypot((double)a, (double)b));
    }
}
