# expect: O(n)  input: array  memory: O(1)
def total(arr):
    s = 0
    for x in arr:
        s += x
    return s
