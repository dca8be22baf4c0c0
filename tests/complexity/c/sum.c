// expect: O(n)  input: array  memory: O(1)
long long sum(const long long *arr, long long n) {
    long long s = 0;
    for (long long i = 0; i < n; i++) s += arr[i];
    return s;
}
