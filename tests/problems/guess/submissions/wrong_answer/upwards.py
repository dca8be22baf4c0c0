# Counts up from 1: right only when the number is small.
guess = 1
while True:
    print(guess, flush=True)
    if input() == "correct":
        break
    guess += 1
