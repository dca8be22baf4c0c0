def longest_common_prefix(words):
    if not words:
        return ""
    first = words[0]
    for i, ch in enumerate(first):
        for w in words[1:]:
            if i >= len(w) or w[i] != ch:
                return first[:i]
    return first
