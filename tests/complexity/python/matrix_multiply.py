# expect: O(n³)  input: number  memory: O(n²)
def matrix_multiply(n):
    a = [[(i * 31 + j * 17) % 10 for j in range(n)] for i in range(n)]
    b = [[(i * 7 + j * 13) % 10 for j in range(n)] for i in range(n)]
    trace = 0
    for i in range(n):
        row = a[i]
        for j in range(n):
            s = 0
            for k in range(n):
                s += row[k] * b[k][j]
            if i == j:
                trace += s
    return trace
