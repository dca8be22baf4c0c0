// expect: O(n²)  input: array  memory: O(1)
long long bubble_sort(long long *arr, long long n) {
    for (long long i = 0; i < n; i++)
        for (long long j = 0; j + 1 < n - i; j++)
            if (arr[j] > arr[j + 1]) { long long t = arr[j]; arr[j] = arr[j + 1]; arr[j + 1] = t; }
    return n ? arr[n / 2] : 0;
}
