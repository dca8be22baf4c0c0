def quick_sort(nums):
    a = list(nums)

    def sort(lo, hi):
        if lo >= hi:
            return
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        sort(lo, j)
        sort(i, hi)

    sort(0, len(a) - 1)
    return a
