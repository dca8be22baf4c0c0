// Runs a catalog entry's JavaScript reference solution against its tests.json on the host.
//
// Usage: node run.js <solution.js> <entry point> <tests.json>
//
// A stand-in for the sandboxed function harness (issue 6): the solution is evaluated in a
// fresh context (top-level function declarations become its globals), the entry point is
// called with each test's JSON arguments, and the canonical JSON of the result is compared
// with the expected value. Exit status 1 on any failure, one line per failing test.
'use strict';
const fs = require('fs');
const vm = require('vm');

function canonical(value) {
  if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']';
  if (value !== null && typeof value === 'object') {
    return '{' + Object.keys(value).sort().map((k) => JSON.stringify(k) + ':' + canonical(value[k])).join(',') + '}';
  }
  return JSON.stringify(value === undefined ? null : value);
}

const [source, entry, testsPath] = process.argv.slice(2);
const context = vm.createContext({});
vm.runInContext(fs.readFileSync(source, 'utf8'), context, { filename: source });
const fn = context[entry];
if (typeof fn !== 'function') {
  console.log(`${source}: no function ${entry}`);
  process.exit(1);
}
const tests = JSON.parse(fs.readFileSync(testsPath, 'utf8'));
let failed = 0;
tests.forEach((test, i) => {
  const args = JSON.parse(JSON.stringify(test.input));
  let got;
  try {
    got = canonical(fn(...args));
  } catch (e) {
    got = `threw ${e}`;
  }
  const want = canonical(test.expected);
  if (got !== want) {
    failed++;
    console.log(`${source}: test ${i}: expected ${want}, got ${got}`);
  }
});
process.exit(failed ? 1 : 0);
