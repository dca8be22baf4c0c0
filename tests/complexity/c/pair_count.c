// expect: O(n²)  input: array  memory: O(1)
long long pair_count(const long long *arr, long long n) {
    long long count = 0;
    for (long long i = 0; i < n; i++)
        for (long long j = i + 1; j < n; j++)
            count += (arr[i] + arr[j]) % 3 == 0;
    return count;
}
