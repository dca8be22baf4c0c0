# expect: O(2ⁿ)  input: number  memory: O(n)
def subset_sum(n):
    # Items 1..n, target -1: no subset reaches it, so every one of the 2^n is tried.
    items = list(range(1, n + 1))

    def count(i, remaining):
        if i == len(items):
            return 1 if remaining == 0 else 0
        return count(i + 1, remaining - items[i]) + count(i + 1, remaining)

    return count(0, -1)
