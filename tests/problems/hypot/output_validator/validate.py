# Kattis output validator: validate.py input answer feedback_dir [flags] < team_output.
# Each line's number must be within float_tolerance (absolute or relative) of the answer.
import sys

def reject(message):
    with open(sys.argv[3] + "judgemessage.txt", "w") as f:
        f.write(message)
    sys.exit(43)

flags = sys.argv[4:]
tolerance = float(flags[flags.index("float_tolerance") + 1]) if "float_tolerance" in flags else 1e-9
expected = open(sys.argv[2]).read().split()
given = sys.stdin.read().split()
if len(given) != len(expected):
    reject("expected %d numbers, got %d" % (len(expected), len(given)))
for i, (e, g) in enumerate(zip(expected, given), 1):
    try:
        x, y = float(e), float(g)
    except ValueError:
        reject("line %d: %r is not a number" % (i, g))
    if y != y or abs(x - y) > tolerance * max(1.0, abs(x)):
        reject("line %d: expected %s, got %s" % (i, e, g))
with open(sys.argv[3] + "judgemessage.txt", "w") as f:
    f.write("%d numbers within %g" % (len(expected), tolerance))
sys.exit(42)
