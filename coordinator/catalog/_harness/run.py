"""Runs a catalog entry's Python reference solution against its tests.json on the host.

Usage: python3 run.py <solution.py> <entry point> <tests.json>

A stand-in for the sandboxed function harness (issue 6): it calls the entry point with
each test's JSON arguments and compares the JSON of the result with the expected value
(canonical JSON text, so True and 1 differ as they do in JSON). Exit status 1 on any
failure, with one line per failing test.
"""
import json
import sys


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def main():
    source, entry, tests_path = sys.argv[1:4]
    scope = {"__name__": "solution"}
    with open(source) as f:
        exec(compile(f.read(), source, "exec"), scope)
    fn = scope[entry]
    with open(tests_path) as f:
        tests = json.load(f)
    failed = 0
    for i, test in enumerate(tests):
        # A fresh copy of the arguments: solutions may mutate their input.
        args = json.loads(json.dumps(test["input"]))
        try:
            got = canonical(fn(*args))
        except Exception as e:  # report, keep going
            got = f"raised {e!r}"
        want = canonical(test["expected"])
        if got != want:
            failed += 1
            print(f"{source}: test {i}: expected {want}, got {got}")
    sys.exit(1 if failed else 0)


main()
