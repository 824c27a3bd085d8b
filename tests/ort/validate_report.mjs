// Validates a `quantize --json` report against the schema documented in README.md ("JSON
// reports"): node validate_report.mjs REPORT.json. Prints each violation; exit 0 iff none.
import fs from 'node:fs';

const doc = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const errors = [];
const where = [];
function check(ok, what) {
  if (!ok) errors.push(`${where.join('.')}: ${what}`);
}
const isInt = (v) => Number.isInteger(v) && v >= 0;
const isStr = (v) => typeof v === 'string';
function fields(obj, spec) {  // spec: {key: predicate or [predicate, description]}
  check(obj !== null && typeof obj === 'object' && !Array.isArray(obj), 'not an object');
  if (obj === null || typeof obj !== 'object') return;
  for (const [key, test] of Object.entries(spec)) {
    where.push(key);
    check(key in obj, 'missing');
    if (key in obj) check(test(obj[key]), `bad value ${JSON.stringify(obj[key]).slice(0, 80)}`);
    where.pop();
  }
}
function each(list, name, fn) {
  check(Array.isArray(list), `${name} is not an array`);
  if (!Array.isArray(list)) return;
  list.forEach((item, i) => {
    where.push(`${name}[${i}]`);
    fn(item);
    where.pop();
  });
}

fields(doc, {
  schema_version: (v) => v === 1,
  tool: (v) => v && isStr(v.name) && isStr(v.version),
  exit_code: isInt,
  outputs: Array.isArray,
  failures: Array.isArray,
});
check('summary' in doc || isStr(doc.error), 'neither a summary nor an error');
if ('summary' in doc) {
  where.push('summary');
  fields(doc.summary, {models: isInt, written: isInt, up_to_date: isInt, failed: isInt,
                       not_inputs: (v) => Array.isArray(v) && v.every(isStr)});
  where.pop();
}
each(doc.failures, 'failures', (f) => fields(f, {model: isStr, error: isStr}));
each(doc.outputs, 'outputs', (o) => {
  fields(o, {
    input: isStr, output: isStr, mode: isStr, options: isStr,
    status: (v) => ['written', 'dry_run', 'up_to_date', 'not_written'].includes(v),
    bytes_before: isInt, bytes_after: isInt, seconds: (v) => typeof v === 'number' && v >= 0,
    passes: Array.isArray, verification: (v) => v === null || typeof v === 'object',
  });
  if (o.status === 'not_written') check(isStr(o.reason), 'not_written without a reason');
  each(o.passes, 'passes', (p) => {
    fields(p, {pass: isStr, changed: Array.isArray, kept: Array.isArray, tensors: Array.isArray,
               warnings: (v) => Array.isArray(v) && v.every(isStr),
               notes: (v) => Array.isArray(v) && v.every(isStr)});
    each(p.changed, 'changed', (c) => fields(c, {node: isStr, what: isStr}));
    each(p.kept, 'kept', (c) => fields(c, {node: isStr, why: isStr}));
    each(p.tensors, 'tensors', (t) => fields(t, {
      name: isStr, dims: (v) => Array.isArray(v) && v.every(Number.isInteger), from: isStr,
      to: isStr, bytes_before: isInt, bytes_after: isInt,
      rel_rms: (v) => v === null || (typeof v === 'number' && v >= 0),
    }));
  });
  if (o.verification) {
    where.push('verification');
    fields(o.verification, {data: isStr, synthetic: (v) => typeof v === 'boolean',
                            samples: isInt, outputs: Array.isArray});
    each(o.verification.outputs, 'outputs', (m) => fields(m, {name: isStr, elements: isInt}));
    where.pop();
  }
});
for (const e of errors) console.log(`schema: ${e}`);
console.log(errors.length ? `${errors.length} violation(s)` : 'report: valid');
process.exit(errors.length ? 1 : 0);
