# expect: O(n)  input: array
def total(arr):
    s = 0
    for x in arr:
        s += x
    return s
