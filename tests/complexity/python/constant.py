# expect: O(1)  input: array  memory: O(1)
def constant(arr):
    return (arr[0] * 2 + arr[-1]) % 7 if arr else 0
