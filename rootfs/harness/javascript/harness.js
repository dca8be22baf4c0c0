// Function-style runs (rootfs/harness/README.md): reads the request from stdin, loads the
// user's file, calls its function with the test's JSON arguments and writes the outcome to
// descriptor 3 as one line tagged "R". `viz.logStep` writes lines tagged "S" there too, at
// once, so the agent streams them while the code still runs. stdout stays the user's.
'use strict';
const fs = require('fs');

const STEP_FD = 3;
// A step larger than this has its data structure replaced by a note (see harness.py).
const MAX_STEP_BYTES = 64 * 1024;

function writeLine(tag, text) {
  const buf = Buffer.from(tag + text + '\n');
  let off = 0;
  while (off < buf.length) off += fs.writeSync(STEP_FD, buf, off);
}

function safeJson(v) {
  const seen = new WeakSet();
  return JSON.stringify(v === undefined ? null : v, (k, x) => {
    if (typeof x === 'bigint') return x.toString();
    if (x instanceof Map) return Object.fromEntries(x);
    if (x instanceof Set) return Array.from(x);
    if (typeof x === 'object' && x !== null) {
      if (seen.has(x)) return '[circular]';
      seen.add(x);
    }
    return x;
  });
}

class Viz {
  constructor(maxSteps) { this.maxSteps = maxSteps; this.count = 0; this.truncated = false; }
  logStep(description, dataStructure, highlights) {
    if (this.count >= this.maxSteps) {
      if (!this.truncated && this.maxSteps > 0) {
        this.truncated = true;
        writeLine('S', JSON.stringify({ description: `[steps truncated: limit of ${this.maxSteps} steps reached]`,
          dataStructure: null, highlights: [], truncated: true }));
      }
      return;
    }
    this.count++;
    const step = { description: String(description), dataStructure: dataStructure === undefined ? null : dataStructure,
      highlights: Array.isArray(highlights) ? highlights : [] };
    let line = safeJson(step);
    if (line.length > MAX_STEP_BYTES) {
      step.dataStructure = `[data structure of ${line.length} bytes truncated]`;
      line = safeJson(step);
    }
    writeLine('S', line);
  }
  log_step(description, dataStructure, highlights) { this.logStep(description, dataStructure, highlights); }
}

class EntryError extends Error {}

function snake(name) {
  return name.replace(/[^0-9A-Za-z]+/g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/^_+|_+$/g, '').toLowerCase();
}
function camel(name) {
  const parts = snake(name).split('_').filter(Boolean);
  return parts.length ? parts[0] + parts.slice(1).map(p => p[0].toUpperCase() + p.slice(1)).join('') : '';
}

// Runs as a script in this context (not an eval, whose `let`/`const` stay local), so every
// top-level declaration of the user's code is visible to later lookups by name.
const vm = require('vm');
const globalEval = (code, filename) => vm.runInThisContext(code, { filename: filename || 'lookup' });
function lookup(name) {
  if (!/^[A-Za-z_$][\w$]*$/.test(name)) return undefined;
  try { return globalEval(`typeof ${name} === 'function' ? ${name} : undefined`); } catch (e) { return undefined; }
}

function topLevelNames(source) {
  const names = new Set();
  const re = /^(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)|^(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=|^class\s+([A-Za-z_$][\w$]*)/gm;
  for (const m of source.matchAll(re)) names.add(m[1] || m[2] || m[3]);
  return [...names];
}

function findEntry(source, entry, name) {
  if (entry) {
    const f = lookup(entry);
    if (f) return f;
    throw new EntryError(`the entry point ${JSON.stringify(entry)} is not a function of the submitted code`);
  }
  const candidates = name ? [...new Set([snake(name), camel(name), name])].filter(Boolean) : [];
  for (const c of candidates) { const f = lookup(c); if (f && !/^class\b/.test(Function.prototype.toString.call(f))) return f; }
  const funcs = topLevelNames(source).filter(n => {
    const f = lookup(n);
    return f && !/^class\b/.test(Function.prototype.toString.call(f));
  });
  if (funcs.length === 1) return lookup(funcs[0]);
  const wanted = candidates.length ? candidates.join(' or ') : "the algorithm's function";
  if (!funcs.length) throw new EntryError(`no function to call: define ${wanted}`);
  throw new EntryError(`several top-level functions (${funcs.join(', ')}) and none is named ${wanted}; name one so or set the entry point`);
}

function paramNames(fn) {
  const src = Function.prototype.toString.call(fn);
  let m = /^[^(]*?\(([^]*?)\)\s*(?:=>|\{)/.exec(src);
  let list = m ? m[1] : (/^(?:async\s+)?([A-Za-z_$][\w$]*)\s*=>/.exec(src) || [])[1];
  if (list === undefined) return null;
  const names = [];
  for (const part of list.split(',')) {
    const id = /^\s*(?:\.\.\.)?([A-Za-z_$][\w$]*)/.exec(part);
    if (!id) return null; // destructuring: names unknown
    names.push(id[1]);
  }
  return names;
}

// The arguments of the call as an array, as the seed binds them.
function bind(fn, args) {
  if (Array.isArray(args)) return args.slice();
  if (args !== null && typeof args === 'object') {
    const names = paramNames(fn);
    const keys = Object.keys(args);
    if (names && keys.every(k => names.includes(k))) return names.map(n => args[n]);
    if (names && names.length === 1) return [args];
    if (!names) return [args];
    throw new EntryError(`the arguments {${keys.join(', ')}} do not match the parameters (${names.join(', ')})`);
  }
  return [args];
}

function empty() { return undefined; }

// A repetition times a batch of calls lasting about this long (see harness.py).
const BATCH_NS = 2e6;
const MAX_BATCH = 100000;
const MAX_COPY_BYTES = 16 << 20;
const WARM_UP_NS = 30e6;

// The process's CPU time in ns. Node 20 has no per-thread clock: V8's helper threads
// (concurrent GC, compilers) count too, which is work the call caused.
function cpuNs() {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

// V8's collector, callable without a command-line flag: a flag set before the first
// context is made exposes `gc` in new contexts. Null if this V8 refuses.
function exposeGc() {
  try {
    require('v8').setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc');
    return typeof gc === 'function' ? gc : null;
  } catch (e) {
    return null;
  }
}

// The heap spaces that hold a program's objects (not V8's code and metadata spaces,
// which grow when V8 re-optimises a function during the call).
const DATA_SPACES = new Set(['new_space', 'old_space', 'large_object_space', 'new_large_object_space']);
function dataBytes() {
  let used = 0;
  for (const s of require('v8').getHeapSpaceStatistics()) if (DATA_SPACES.has(s.space_name)) used += s.space_used_size;
  return used;
}

// Heap bytes a call allocates on fresh arguments: collect, call, compare the data spaces'
// use. V8 has no per-call peak, so this is what the call allocated (kept or not yet
// collected); a scavenge during the call hides some of its garbage. The median of a few
// warm calls: V8's own work (a deoptimisation, the end of a concurrent sweep) moves one
// call's figure up or down by a few KiB.
const PEAK_CALLS = 5;
function heapDelta(fn, argsText, gc) {
  const deltas = [];
  for (let i = 0; i < PEAK_CALLS; i++) {
    const args = bind(fn, JSON.parse(argsText));
    gc();
    const before = dataBytes();
    fn(...args);
    deltas.push(Math.max(0, dataBytes() - before));
  }
  deltas.sort((a, b) => a - b);
  return deltas[deltas.length >> 1];
}

// CPU ns per call over `repetitions` batches within the budget, the median empty call,
// as measure() in harness.py, and the call's heap delta (heapDelta) when the budget
// leaves room for it.
function measure(fn, argsText, mutated, firstNs, repetitions, budgetNs) {
  const calls = [], empties = [];
  const perCall = Math.max(firstNs, 1);
  let batch = Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_NS / perCall)));
  if (mutated) batch = Math.max(1, Math.min(batch, Math.floor(MAX_COPY_BYTES / Math.max(argsText.length, 1))));
  let spent = firstNs;
  if (!mutated && firstNs < budgetNs) {
    // Grow the batch until it lasts about BATCH_NS (see harness.py); this also lets the
    // JIT compile the function before the measured batches.
    const one = bind(fn, JSON.parse(argsText));
    while (batch < MAX_BATCH && spent < budgetNs) {
      const t0 = cpuNs();
      for (let i = 0; i < batch; i++) fn(...one);
      const took = cpuNs() - t0;
      spent += took;
      if (took >= BATCH_NS / 2) break;
      batch = Math.min(MAX_BATCH, batch * Math.max(2, Math.floor(BATCH_NS / Math.max(took, 1))));
    }
  }
  if (mutated && firstNs < budgetNs) {
    // V8 compiles a function in tiers, on helper threads whose CPU this clock counts:
    // the first calls are several times slower than the rest. Warm up on fresh copies
    // (for functions that keep their arguments, the calibration above did it).
    const until = Math.min(spent + WARM_UP_NS, budgetNs / 4);
    for (let calls = 0; calls < 3 || spent < until; calls++) {
      const args = bind(fn, JSON.parse(argsText));
      const t0 = cpuNs();
      fn(...args);
      const took = cpuNs() - t0;
      spent += took;
      // The warm call's time sizes the batches, not the cold first one's.
      batch = Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_NS / Math.max(took, 1)),
        Math.floor(MAX_COPY_BYTES / Math.max(argsText.length, 1))));
      if (spent >= budgetNs / 4) break;
    }
  }
  if (firstNs < budgetNs) {
    for (let r = 0; r < repetitions && spent < budgetNs; r++) {
      let t0, t1, t2;
      if (mutated) {
        const bound = [];
        for (let i = 0; i < batch; i++) bound.push(bind(fn, JSON.parse(argsText)));
        t0 = cpuNs();
        for (let i = 0; i < batch; i++) fn(...bound[i]);
        t1 = cpuNs();
        for (let i = 0; i < batch; i++) empty(...bound[i]);
        t2 = cpuNs();
      } else {
        // No array of argument lists to walk through (see harness.py).
        const one = bind(fn, JSON.parse(argsText));
        t0 = cpuNs();
        for (let i = 0; i < batch; i++) fn(...one);
        t1 = cpuNs();
        for (let i = 0; i < batch; i++) empty(...one);
        t2 = cpuNs();
      }
      calls.push(Math.round((t1 - t0) / batch));
      empties.push(Math.round((t2 - t1) / batch));
      spent += t2 - t0;
    }
  }
  if (!calls.length) calls.push(Math.round(firstNs));
  empties.sort((a, b) => a - b);
  const perCallNs = calls[calls.length >> 1];
  let peak = null;
  if (spent + (PEAK_CALLS + 1) * perCallNs < budgetNs) {
    const gc = exposeGc();
    if (gc) peak = heapDelta(fn, argsText, gc);
  }
  return { calls, empty: empties.length ? empties[empties.length >> 1] : 0, peak };
}

function main() {
  const req = JSON.parse(fs.readFileSync(0, 'utf8'));
  globalThis.viz = new Viz(req.maxSteps | 0);
  globalThis.require = require;
  const source = fs.readFileSync(req.source, 'utf8');
  let fn;
  try {
    globalEval(source, req.source);
    fn = findEntry(source, req.entry || '', req.name || '');
  } catch (e) {
    return fail(e);
  }
  const repetitions = req.repetitions | 0;
  const argsText = repetitions > 0 ? JSON.stringify(req.args === undefined ? null : req.args) : '';
  let bound;
  try {
    bound = bind(fn, req.args);
  } catch (e) {
    return fail(e);
  }
  const start = process.hrtime.bigint();
  const cpuStart = repetitions > 0 ? cpuNs() : 0;
  let result;
  try {
    result = fn(...bound);
  } catch (e) {
    return fail(e);
  }
  const firstNs = repetitions > 0 ? cpuNs() - cpuStart : 0;
  const timeUs = Number((process.hrtime.bigint() - start) / 1000n);
  const finish = (value) => {
    let bench = '';
    if (repetitions > 0) {
      let m;
      try {
        const mutated = JSON.stringify(req.args === undefined ? null : req.args) !== argsText;
        m = measure(fn, argsText, mutated, firstNs, repetitions, (req.budgetMs || 1000) * 1e6);
      } catch (e) {
        return fail(e);
      }
      bench = `,"cpuNs":${JSON.stringify(m.calls)},"emptyNs":${m.empty},"peakBytes":${m.peak === null ? 'null' : Math.round(m.peak)}`;
    }
    writeLine('R', `{"ok":true,"timeUs":${timeUs}${bench},"value":${safeJson(value)}}`);
  };
  if (result && typeof result.then === 'function') {
    result.then(finish, fail);
  } else {
    finish(result);
  }
}

function fail(e) {
  if (e instanceof EntryError) {
    writeLine('R', JSON.stringify({ ok: false, kind: 'entry', error: e.message }));
    return;
  }
  const error = e instanceof Error ? `${e.name}: ${e.message}` : `thrown: ${String(e)}`;
  writeLine('R', JSON.stringify({ ok: false, kind: 'exception', error, trace: e && e.stack ? String(e.stack) : '' }));
  process.exitCode = 1;
}

main();
