def max_activities(intervals):
    count, end = 0, float('-inf')
    for s, e in sorted(intervals, key=lambda iv: iv[1]):
        if s >= end:
            count += 1
            end = e
    return count
