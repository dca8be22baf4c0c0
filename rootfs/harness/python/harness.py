# Function-style runs (rootfs/harness/README.md): reads the request from stdin, loads the
# user's file, calls its function with the test's JSON arguments and writes the outcome to
# descriptor 3 as one line tagged "R". `viz.log_step` writes lines tagged "S" there too, at
# once, so the agent streams them while the code still runs. stdout stays the user's.
import inspect
import json
import os
import re
import sys
import time
import traceback

STEP_FD = 3
# A step line larger than this has its data structure replaced by a note, so one giant
# step cannot eat the run's byte budget (the agent drops lines over 1 MiB anyway).
MAX_STEP_BYTES = 64 * 1024


def _write(tag, obj):
    data = tag + json.dumps(obj, separators=(",", ":"), default=repr).encode() + b"\n"
    view = memoryview(data)
    while view:
        n = os.write(STEP_FD, view)
        view = view[n:]


class Viz:
    def __init__(self, max_steps):
        self.max_steps = max_steps
        self.count = 0
        self.truncated = False

    def log_step(self, description, data_structure=None, highlights=None):
        if self.count >= self.max_steps:
            if not self.truncated and self.max_steps > 0:
                self.truncated = True
                _write(b"S", {"description": "[steps truncated: limit of %d steps reached]" % self.max_steps,
                              "dataStructure": None, "highlights": [], "truncated": True})
            return
        self.count += 1
        step = {"description": str(description), "dataStructure": data_structure,
                "highlights": list(highlights) if highlights is not None else []}
        line = json.dumps(step, separators=(",", ":"), default=repr)
        if len(line) > MAX_STEP_BYTES:
            step["dataStructure"] = "[data structure of %d bytes truncated]" % len(line)
        _write(b"S", step)

    logStep = log_step


def _snake(name):
    s = re.sub(r"[^0-9A-Za-z]+", "_", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.strip("_").lower()


def _camel(name):
    parts = [p for p in _snake(name).split("_") if p]
    return parts[0] + "".join(p.title() for p in parts[1:]) if parts else ""


class EntryError(Exception):
    pass


def _find_entry(ns, entry, name):
    def own_functions(d):
        return [k for k, v in d.items() if inspect.isfunction(v) and not k.startswith("_")
                and getattr(v, "__module__", None) == "__solution__"]

    if entry:
        fn = ns.get(entry)
        if callable(fn):
            return fn
        raise EntryError("the entry point %r is not a function of the submitted code" % entry)
    candidates = [c for c in dict.fromkeys([_snake(name), _camel(name), name]) if c] if name else []
    for c in candidates:
        if inspect.isfunction(ns.get(c)):
            return ns[c]
    # LeetCode style: class Solution with the method.
    sol = ns.get("Solution")
    if inspect.isclass(sol):
        obj = sol()
        for c in candidates:
            if callable(getattr(obj, c, None)):
                return getattr(obj, c)
        methods = [k for k, v in vars(sol).items() if inspect.isfunction(v) and not k.startswith("_")]
        if len(methods) == 1:
            return getattr(obj, methods[0])
    funcs = own_functions(ns)
    if len(funcs) == 1:
        return ns[funcs[0]]
    wanted = " or ".join(candidates) if candidates else "the algorithm's function"
    if not funcs:
        raise EntryError("no function to call: define %s" % wanted)
    raise EntryError("several top-level functions (%s) and none is named %s; name one so or set the entry point"
                     % (", ".join(funcs), wanted))


def _bind(fn, args):
    """The positional and keyword arguments of the call, as the seed binds them."""
    if isinstance(args, list):
        return list(args), {}
    if isinstance(args, dict):
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return [], args
        names = [p for p, v in params.items() if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]
        takes_kwargs = any(v.kind == v.VAR_KEYWORD for v in params.values())
        if takes_kwargs or all(k in names for k in args):
            return [], args
        if len(names) == 1:
            # The seed's generic rule: a one-parameter function gets the whole object.
            return [args], {}
        raise EntryError("the arguments {%s} do not match the parameters (%s)" % (", ".join(args), ", ".join(names)))
    return [args], {}


def _empty(*_args, **_kwargs):
    return None


# A repetition times a batch of calls lasting about this long, so the clock's cost and
# resolution (about a microsecond) are a small part of what it measures.
BATCH_NS = 2_000_000
MAX_BATCH = 100_000
# Fresh copies of arguments a call modifies are made before the batch, at most this many bytes.
MAX_COPY_BYTES = 16 << 20


def _measure(fn, args_text, mutated, first_ns, repetitions, budget_ns):
    """CPU nanoseconds per call over `repetitions` batches (within the budget), the median
    cost of an empty call through the same loop, and the call's peak allocation.

    The thread's CPU clock, not the wall: another process on the CPU does not count. A
    function that modified its arguments gets a fresh copy for every call (parsed before
    the clock starts); one that did not is called on the same arguments."""
    clock = time.thread_time_ns
    calls, empties = [], []
    per_call = max(first_ns, 1)
    batch = max(1, min(MAX_BATCH, BATCH_NS // per_call))
    if mutated:
        batch = max(1, min(batch, MAX_COPY_BYTES // max(len(args_text), 1)))
    spent = first_ns
    if not mutated and first_ns < budget_ns:
        # One call's time is a poor guess for fast calls (the first includes warming up):
        # grow the batch until it lasts about BATCH_NS.
        pos, kw = _bind(fn, json.loads(args_text))
        while batch < MAX_BATCH and spent < budget_ns:
            t0 = clock()
            for _ in range(batch):
                fn(*pos, **kw)
            took = clock() - t0
            spent += took
            if took >= BATCH_NS // 2:
                break
            batch = min(MAX_BATCH, batch * max(2, BATCH_NS // max(took, 1)))
    if first_ns < budget_ns:
        for _ in range(repetitions):
            if spent >= budget_ns:
                break
            if mutated:
                bound = [_bind(fn, json.loads(args_text)) for _ in range(batch)]
                t0 = clock()
                for pos, kw in bound:
                    fn(*pos, **kw)
                t1 = clock()
                for pos, kw in bound:
                    _empty(*pos, **kw)
                t2 = clock()
            else:
                # The same arguments for every call: no list of them to walk through (a
                # large one costs cache and TLB misses that would grow with nothing).
                pos, kw = _bind(fn, json.loads(args_text))
                t0 = clock()
                for _ in range(batch):
                    fn(*pos, **kw)
                t1 = clock()
                for _ in range(batch):
                    _empty(*pos, **kw)
                t2 = clock()
            calls.append((t1 - t0) / batch)
            empties.append((t2 - t1) / batch)
            spent += t2 - t0
    if not calls:
        calls = [first_ns]
    empties.sort()
    empty = empties[len(empties) // 2] if empties else 0
    peak = None
    # tracemalloc slows allocation down several times: only when the budget allows it.
    if spent + 4 * per_call < budget_ns:
        import tracemalloc
        pos, kw = _bind(fn, json.loads(args_text))
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        fn(*pos, **kw)
        peak = max(0, tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()
    return calls, empty, peak


def main():
    req = json.loads(sys.stdin.buffer.read())
    try:
        sys.stdin.close()
    except Exception:
        pass
    viz = Viz(int(req.get("maxSteps", 0)))
    path = req["source"]
    with open(path, "rb") as f:
        source = f.read()
    ns = {"__name__": "__solution__", "__builtins__": __builtins__, "viz": viz}
    sys.modules.setdefault("viz", viz)
    try:
        code = compile(source, path, "exec")
        exec(code, ns)
        fn = _find_entry(ns, req.get("entry") or "", req.get("name") or "")
    except EntryError as e:
        _write(b"R", {"ok": False, "kind": "entry", "error": str(e)})
        return 0
    except BaseException as e:
        _write(b"R", {"ok": False, "kind": "exception", "error": "%s: %s" % (type(e).__name__, e),
                      "trace": traceback.format_exc(limit=-8)})
        return 1
    repetitions = int(req.get("repetitions", 0) or 0)
    args = req.get("args")
    if repetitions > 0:
        args_text = json.dumps(args)
    try:
        pos, kw = _bind(fn, args)
    except EntryError as e:
        _write(b"R", {"ok": False, "kind": "entry", "error": str(e)})
        return 0
    start = time.perf_counter()
    cpu_start = time.thread_time_ns()
    try:
        result = fn(*pos, **kw)
    except RecursionError as e:
        _write(b"R", {"ok": False, "kind": "exception", "error": "RecursionError: %s" % e})
        return 1
    except BaseException as e:
        _write(b"R", {"ok": False, "kind": "exception", "error": "%s: %s" % (type(e).__name__, e),
                      "trace": traceback.format_exc(limit=-8)})
        return 1
    first_ns = time.thread_time_ns() - cpu_start
    elapsed = time.perf_counter() - start
    try:
        value = json.dumps(result, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        # Tuples and the like already serialize; sets and objects do not.
        if isinstance(result, (set, frozenset)):
            value = json.dumps(sorted(result, key=repr), separators=(",", ":"), default=repr)
        else:
            _write(b"R", {"ok": False, "kind": "exception", "error": "the result is not JSON: %s" % e})
            return 1
    bench = b""
    if repetitions > 0:
        mutated = json.dumps(args) != args_text
        try:
            calls, empty, peak = _measure(fn, args_text, mutated, first_ns, repetitions,
                                          int(req.get("budgetMs", 1000)) * 1_000_000)
        except BaseException as e:
            _write(b"R", {"ok": False, "kind": "exception", "error": "a repeated call failed: %s: %s"
                          % (type(e).__name__, e), "trace": traceback.format_exc(limit=-8)})
            return 1
        bench = (',"cpuNs":%s,"emptyNs":%d,"peakBytes":%s' % (
            json.dumps([int(c) for c in calls]), int(empty), "null" if peak is None else int(peak))).encode()
    sys.stdout.flush()
    line = b'R{"ok":true,"timeUs":%d' % int(elapsed * 1e6) + bench + b',"value":' + value.encode() + b"}\n"
    view = memoryview(line)
    while view:
        view = view[os.write(STEP_FD, view):]
    return 0


if __name__ == "__main__":
    sys.exit(main())
