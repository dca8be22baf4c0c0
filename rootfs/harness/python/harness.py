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


def _call(fn, args):
    if isinstance(args, list):
        return fn(*args)
    if isinstance(args, dict):
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return fn(**args)
        names = [p for p, v in params.items() if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]
        takes_kwargs = any(v.kind == v.VAR_KEYWORD for v in params.values())
        if takes_kwargs or all(k in names for k in args):
            return fn(**args)
        if len(names) == 1:
            # The seed's generic rule: a one-parameter function gets the whole object.
            return fn(args)
        raise EntryError("the arguments {%s} do not match the parameters (%s)" % (", ".join(args), ", ".join(names)))
    return fn(args)


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
    start = time.perf_counter()
    try:
        result = _call(fn, req.get("args"))
    except EntryError as e:
        _write(b"R", {"ok": False, "kind": "entry", "error": str(e)})
        return 0
    except RecursionError as e:
        _write(b"R", {"ok": False, "kind": "exception", "error": "RecursionError: %s" % e})
        return 1
    except BaseException as e:
        _write(b"R", {"ok": False, "kind": "exception", "error": "%s: %s" % (type(e).__name__, e),
                      "trace": traceback.format_exc(limit=-8)})
        return 1
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
    sys.stdout.flush()
    line = b'R{"ok":true,"timeUs":%d,"value":' % int(elapsed * 1e6) + value.encode() + b"}\n"
    view = memoryview(line)
    while view:
        view = view[os.write(STEP_FD, view):]
    return 0


if __name__ == "__main__":
    sys.exit(main())
