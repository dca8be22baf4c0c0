# Kattis interactor: interactor.py input answer feedback_dir < program's output > program's input
import sys

secret = int(open(sys.argv[1]).read())

def verdict(code, message):
    with open(sys.argv[3] + "judgemessage.txt", "w") as f:
        f.write(message)
    sys.exit(code)

for guesses in range(1, 11):
    line = sys.stdin.readline()
    if not line:
        verdict(43, "the program stopped after %d guesses" % (guesses - 1))
    try:
        guess = int(line)
    except ValueError:
        verdict(43, "guess %d is not a number: %r" % (guesses, line[:40]))
    if guess == secret:
        print("correct", flush=True)
        verdict(42, "found in %d guesses" % guesses)
    print("lower" if guess > secret else "higher", flush=True)
verdict(43, "no luck in 10 guesses")
