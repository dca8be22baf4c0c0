def reverse_list(head):
    prev = None
    while head is not None:
        nxt = head["next"]
        head["next"] = prev
        prev, head = head, nxt
    return prev
