// expect: O(1)  input: array  memory: O(1)
long long constant(const long long *arr, long long n) {
    return n ? (arr[0] * 2 + arr[n - 1]) % 7 : 0;
}
