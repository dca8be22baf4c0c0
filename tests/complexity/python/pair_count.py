# expect: O(n²)  input: array  memory: O(1)
def pair_count(arr):
    count = 0
    n = len(arr)
    for i in range(n):
        a = arr[i]
        for j in range(i + 1, n):
            if (a + arr[j]) % 3 == 0:
                count += 1
    return count
