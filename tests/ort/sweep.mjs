// Checks the tool's outputs over a corpus of models in ONNX Runtime (CPU): for every manifest
// entry (one model, one mode, one run of the tool), does the quantized model load and run where
// the float model does, and do its outputs agree with the float model's?
//
//   node sweep.mjs --manifest M.jsonl [--summary S.json] [--results R.jsonl] [--jobs N]
//                  [--timeout SECONDS] [--threads N] [--ort-optimization LEVEL] [--check load]
//
// Normally run by tools/sweep_corpus.sh, which runs the tool and writes the manifest: one JSON
// object a line, {model, mode, float, quant, data, exit, stderr}: a name for the model
// ("node/test_abs"), the mode, the float model, the tool's output, the test-data folder
// (input_N.pb as serialized TensorProto, matched to the model's inputs by name, else by order),
// the tool's exit status (128+N: killed by signal N, 124: timed out) and a file with its stderr.
//
// Each entry gets one class, the first that applies:
//   crash         the tool exited 1 (or 2, 4, 5, 3 without a message), was killed by a signal,
//                 timed out, or exited 0 without writing its output
//   opset<7       the tool refused (exit 3) a model whose default-domain opset is below 7 (on purpose)
//   refused       the tool exited 3 with a message, or wrote the model back unchanged (same graph
//                 and opset imports)
//   not-runnable  ONNX Runtime cannot load or run the float model itself on its test data
//                 (e.g. sequence/optional inputs, types onnxruntime-node lacks): says nothing
//                 about the tool
//   invalid       ONNX Runtime refuses to load the output, fails running it, or crashes / hangs
//                 on it
//   wrong         the output's inputs/outputs differ in name, type or shape from the float
//                 model's; or, for fp16 and q4f16, a float output differs from the float model's
//                 by more than 1e-2 of that output's range (max - min over its finite values;
//                 at least its largest magnitude, so a one-value output is judged relatively,
//                 and at least 1e-6) or a non-float output is not identical; for the other modes, a
//                 value is not finite where the float model's is (a model whose float outputs
//                 change from one run to the next is only checked that way too)
//   ok            none of the above
// For invalid and wrong entries the output is tried again with ONNX Runtime's graph
// optimizations disabled, and the note says whether the failure stays. --check load judges every
// mode as the lossy ones (shapes, types, finiteness) and prints the cosine similarity of each
// output to the float model's instead: for real models on random inputs, where how close a lossy
// mode stays is for their own tests to judge.
//
// The float model runs once per model (its outputs are kept for all the modes). Entries are
// checked by --jobs child processes (default 2), one model at a time; ONNX Runtime runs with
// --threads intra-op threads (default 1) and --ort-optimization (default all, as compare.mjs).
// A child that crashes (a native fault in ONNX Runtime) or spends more than --timeout seconds
// (default 20) on one step is killed: the entry it was on is marked (invalid, or not-runnable
// if it was the float model) and a new child carries on after it.
//
// Prints a table per mode, then every entry that is not ok with its one-line reason (entries of
// one mode, class and reason on one line). --summary writes the counts and the non-ok entries
// as JSON, --results every entry as JSON lines. Exit status 1 iff an entry is invalid, wrong or
// a crash; 2 on an error of the sweep itself.
import fs from 'node:fs';
import path from 'node:path';
import {fork} from 'node:child_process';
import {fileURLToPath} from 'node:url';
import os from 'node:os';
import {scan, varint} from './proto.mjs';

const CLASSES = ['ok', 'refused', 'invalid', 'wrong', 'crash', 'not-runnable', 'opset<7'];
const FAILING = new Set(['invalid', 'wrong', 'crash']);
const FLOAT16_MODES = new Set(['fp16', 'q4f16']);
const MODES = ['q4', 'q4f16', 'fp16', 'int8', 'uint8', 'q8', 'static_int8', 'static_uint8', 'nf4', 'fp4', 'q4_qdq'];

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const key = a.slice(2);
    if (key === 'worker') {
      args.worker = true;
      continue;
    }
    if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
    args[key] = argv[++i];
  }
  return args;
}

// --- protobuf (ModelProto top level, TensorProto) -------------------------------------------

function varintBig(buf, pos) {  // as a signed 64-bit BigInt
  let value = 0n, shift = 0n;
  for (;;) {
    const b = buf[pos.i++];
    if (b === undefined) throw new Error('truncated protobuf');
    value |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return BigInt.asIntN(64, value);
    shift += 7n;
  }
}

// ModelProto: graph (7) and opset_import (8: domain 1, version 2). The "signature" is what must
// change for a model to count as rewritten: graph bytes and opset imports.
function modelInfo(file) {
  const buf = fs.readFileSync(file);
  const parts = [];
  let opset = null;
  scan(buf, (field, wire, value) => {
    if (field === 7 && wire === 2) parts.push(value);
    if (field === 8 && wire === 2) {
      parts.push(value);
      let domain = '', version = 0;
      scan(value, (f, w, v) => {
        if (f === 1 && w === 2) domain = v.toString();
        if (f === 2 && w === 0) version = v;
      });
      if (domain === '' || domain === 'ai.onnx') opset = opset === null ? version : Math.max(opset, version);
    }
  });
  return {opset, signature: Buffer.concat(parts)};
}

const TENSOR_TYPES = {1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64',
                      8: 'string', 9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64'};
const ARRAYS = {float32: Float32Array, uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array,
                int16: Int16Array, int32: Int32Array, int64: BigInt64Array, bool: Uint8Array,
                float16: Uint16Array, float64: Float64Array, uint32: Uint32Array, uint64: BigUint64Array};
const TYPE_NAMES = {...TENSOR_TYPES, 14: 'complex64', 15: 'complex128', 16: 'bfloat16', 17: 'float8e4m3fn',
                    18: 'float8e4m3fnuz', 19: 'float8e5m2', 20: 'float8e5m2fnuz', 21: 'uint4', 22: 'int4'};

// A serialized TensorProto as {name, type, dims, data}: data a typed array of the type
// onnxruntime-node takes (float16 as Uint16Array bits, bool as Uint8Array) or strings.
function decodeTensor(buf) {
  const t = {dims: [], dataType: 0, name: '', raw: null, floats: [], ints: [], int64s: [], doubles: [],
             uint64s: [], strings: [], external: false};
  const packed = (body, each) => { const p = {i: 0}; while (p.i < body.length) each(body, p); };
  scan(buf, (field, wire, value, whole, start) => {
    if (wire === 2) {
      if (field === 1) packed(value, (b, p) => t.dims.push(varint(b, p)));
      else if (field === 4) for (let k = 0; k + 4 <= value.length; k += 4) t.floats.push(value.readFloatLE(k));
      else if (field === 5) packed(value, (b, p) => t.ints.push(Number(varintBig(b, p))));
      else if (field === 6) t.strings.push(value.toString());
      else if (field === 7) packed(value, (b, p) => t.int64s.push(varintBig(b, p)));
      else if (field === 8) t.name = value.toString();
      else if (field === 9) t.raw = value;
      else if (field === 10) for (let k = 0; k + 8 <= value.length; k += 8) t.doubles.push(value.readDoubleLE(k));
      else if (field === 11) packed(value, (b, p) => t.uint64s.push(BigInt.asUintN(64, varintBig(b, p))));
      else if (field === 13) t.external = true;
    } else if (wire === 0) {
      const p = {i: start};
      if (field === 1) t.dims.push(value);
      else if (field === 2) t.dataType = value;
      else if (field === 5) t.ints.push(Number(varintBig(whole, p)));
      else if (field === 7) t.int64s.push(varintBig(whole, p));
      else if (field === 11) t.uint64s.push(BigInt.asUintN(64, varintBig(whole, p)));
      else if (field === 14 && value === 1) t.external = true;
    } else if (wire === 5) {
      if (field === 4) t.floats.push(whole.readFloatLE(value));
    } else if (wire === 1) {
      if (field === 10) t.doubles.push(whole.readDoubleLE(value));
    }
  });
  const type = TENSOR_TYPES[t.dataType];
  if (!type) throw new Error(`test data of type ${TYPE_NAMES[t.dataType] ?? t.dataType}, which onnxruntime-node cannot feed`);
  if (t.external) throw new Error('test data with external data');
  const count = t.dims.reduce((a, b) => a * b, 1);
  let data;
  if (type === 'string') data = t.strings;
  else if (t.raw) {
    const Ctor = ARRAYS[type];
    data = new Ctor(count);
    const bytes = count * Ctor.BYTES_PER_ELEMENT;
    if (t.raw.length < bytes) throw new Error('raw_data shorter than its dims');
    new Uint8Array(data.buffer).set(t.raw.subarray(0, bytes));
  } else {
    const source = {float32: t.floats, float64: t.doubles, int64: t.int64s, uint32: t.uint64s.map(Number),
                    uint64: t.uint64s}[type] ?? t.ints;
    data = ARRAYS[type].from(source);
  }
  if (data.length !== count) throw new Error(`test data has ${data.length} values for dims [${t.dims}]`);
  return {name: t.name, type, dims: t.dims, data};
}

// --- numbers ----------------------------------------------------------------------------------

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const isFloatType = (type) => type === 'float32' || type === 'float64' || type === 'float16';

// An ORT output as {type, dims, values}: values a Float64Array for float types, else the data.
function snapshot(tensor) {
  if (!tensor || typeof tensor !== 'object' || !('dims' in tensor)) return {type: 'non-tensor', dims: [], values: []};
  const dims = Array.from(tensor.dims, Number);
  let values = tensor.data;
  if (tensor.type === 'float16') values = Float64Array.from(tensor.data, halfToFloat);
  else if (isFloatType(tensor.type)) values = Float64Array.from(tensor.data);
  else values = Array.from(tensor.data);
  return {type: tensor.type, dims, values};
}

const fmt = (x) => (typeof x === 'number' ? Number(x.toPrecision(6)).toString() : String(x));

// Compares one output of the quantized model with the float model's. Returns null or a reason.
function compareOutput(name, f, q, exact) {
  if (q.type !== f.type) return `output '${name}': type ${q.type}, float model ${f.type}`;
  if (q.dims.join() !== f.dims.join()) return `output '${name}': shape [${q.dims}], float model [${f.dims}]`;
  const n = f.values.length;
  if (!isFloatType(f.type)) {
    if (!exact) return null;
    for (let i = 0; i < n; i++) {
      if (f.values[i] !== q.values[i]) {
        let bad = 0;
        for (let k = 0; k < n; k++) bad += f.values[k] !== q.values[k];
        return `output '${name}' (${f.type}): ${bad}/${n} values differ; first [${i}]: float ${f.values[i]} vs ${q.values[i]}`;
      }
    }
    return null;
  }
  if (!exact) {
    let bad = 0, first = -1;
    for (let i = 0; i < n; i++) {
      if (Number.isFinite(f.values[i]) && !Number.isFinite(q.values[i])) {
        bad++;
        if (first < 0) first = i;
      }
    }
    return bad ? `output '${name}': ${bad}/${n} values not finite where the float model's are; first [${first}]: float ${fmt(f.values[first])} vs ${q.values[first]}` : null;
  }
  let lo = Infinity, hi = -Infinity;
  for (const v of f.values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const range = hi >= lo ? Math.max(hi - lo, Math.abs(lo), Math.abs(hi)) : 0;
  const tol = 1e-2 * Math.max(range, 1e-6);
  let bad = 0, worst = -1, worstDiff = -1;
  for (let i = 0; i < n; i++) {
    const a = f.values[i], b = q.values[i];
    let diff;
    if (Number.isFinite(a)) diff = Number.isNaN(b) ? Infinity : Math.abs(a - b);
    else diff = Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)) ? 0 : Infinity;
    if (diff > tol) {
      bad++;
      if (diff > worstDiff) { worstDiff = diff; worst = i; }
    }
  }
  if (!bad) return null;
  return `output '${name}': ${bad}/${n} values off by more than ${fmt(tol)} (1e-2 of range ${fmt(range)}); ` +
         `worst [${worst}]: float ${fmt(f.values[worst])} vs ${fmt(q.values[worst])}` +
         (Number.isFinite(worstDiff) && f.values[worst] !== 0 ? ` (relative ${fmt(worstDiff / Math.abs(f.values[worst]))})` : '');
}

// The smallest cosine similarity over the float outputs both models have (null if none).
function minCosine(floatOutputs, outputs) {
  let worst = null;
  for (const [name, f] of Object.entries(floatOutputs)) {
    const q = outputs[name];
    if (!q || !isFloatType(f.type)) continue;
    let dot = 0, ff = 0, qq = 0;
    for (let i = 0; i < f.values.length; i++) {
      const a = f.values[i], b = q.values[i];
      if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
      dot += a * b, ff += a * a, qq += b * b;
    }
    const c = ff > 0 && qq > 0 ? dot / Math.sqrt(ff * qq) : ff === qq ? 1 : 0;
    worst = worst === null ? c : Math.min(worst, c);
  }
  return worst;
}

// --- worker: checks the entries of one model at a time ----------------------------------------

function oneLine(text, paths = {}) {
  let s = String(text ?? '');
  for (const [p, label] of Object.entries(paths)) if (p) s = s.split(p).join(label);
  s = s.replace(/\s+/g, ' ').trim();
  return s.length > 400 ? `${s.slice(0, 400)}...` : s;
}

async function worker(args) {
  const ort = (await import('onnxruntime-node')).default;
  const threads = Number(args.threads ?? 1);
  const sessionOptions = (level) => ({intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3,
                                      graphOptimizationLevel: level});
  const level = args['ort-optimization'] ?? 'all';
  const loadOnly = args.check === 'load';
  const send = (message) => new Promise((resolve) => process.send(message, resolve));

  function readInputs(dir, meta) {
    const tensors = [];
    for (let k = 0; fs.existsSync(path.join(dir, `input_${k}.pb`)); k++) {
      tensors.push(decodeTensor(fs.readFileSync(path.join(dir, `input_${k}.pb`))));
    }
    const names = new Set(meta.map((m) => m.name));
    const byName = tensors.length && tensors.every((t) => names.has(t.name));
    const feeds = {};
    tensors.forEach((t, k) => {
      const name = byName ? t.name : meta[k]?.name;
      if (name === undefined) throw new Error(`input_${k}.pb has no matching model input`);
      feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    });
    return feeds;
  }

  process.on('message', async ({task}) => {
    let float = null;  // {session, feeds, outputs, inputs, random} once run, {error} if it cannot run
    const ensureFloat = async () => {
      if (float) return float;
      await send({stage: 'float'});
      let session = null;
      try {
        session = await ort.InferenceSession.create(task.float, sessionOptions(level));
        const nonTensor = session.inputMetadata.find((m) => !m.isTensor) ?? session.outputMetadata.find((m) => !m.isTensor);
        if (nonTensor) throw new Error(`non-tensor (sequence/optional/map) input or output '${nonTensor.name}', which onnxruntime-node cannot feed or read`);
        const feeds = readInputs(task.data, session.inputMetadata);
        const missing = session.inputMetadata.find((m) => !feeds[m.name]);
        if (missing) throw new Error(`no test data for input '${missing.name}'`);
        const out = await session.run(feeds);
        const outputs = Object.fromEntries(session.outputNames.map((n) => [n, snapshot(out[n])]));
        float = {session, feeds, outputs, inputs: session.inputMetadata, random: null};
      } catch (e) {
        if (session) await session.release();
        float = {error: oneLine(e.message, {[task.float]: '<model>'})};
      }
      return float;
    };
    // Does the float model give other outputs on a second run (random ops)? Asked only when a
    // comparison fails.
    const isRandom = async () => {
      if (float.random === null) {
        const again = await float.session.run(float.feeds);
        float.random = Object.entries(float.outputs).some(([n, f]) => {
          const g = snapshot(again[n]);
          return g.values.length !== f.values.length || f.values.some((v, i) => !Object.is(v, g.values[i]));
        });
      }
      return float.random;
    };

    // One check of the output: load (invalid if ONNX Runtime refuses it), same inputs as the
    // float model (wrong if not), run (invalid if it fails), compare the outputs.
    const check = async (entry, optimization) => {
      const paths = {[entry.quant]: '<output>', [task.float]: '<model>'};
      let session;
      try {
        session = await ort.InferenceSession.create(entry.quant, sessionOptions(optimization));
      } catch (e) {
        return {cls: 'invalid', reason: oneLine(e.message, paths)};
      }
      try {
        const qin = Object.fromEntries(session.inputMetadata.map((m) => [m.name, m]));
        for (const m of float.inputs) {
          if (!qin[m.name]) return {cls: 'wrong', reason: `input '${m.name}' missing`};
          if (qin[m.name].type !== m.type) return {cls: 'wrong', reason: `input '${m.name}': type ${qin[m.name].type}, float model ${m.type}`};
        }
        if (session.inputMetadata.length !== float.inputs.length) {
          return {cls: 'wrong', reason: `inputs [${session.inputNames}], float model [${float.inputs.map((m) => m.name)}]`};
        }
        let out;
        try {
          out = await session.run(float.feeds);
        } catch (e) {
          return {cls: 'invalid', reason: oneLine(e.message, paths)};
        }
        const outputs = Object.fromEntries(session.outputNames.map((n) => [n, snapshot(out[n])]));
        const exact = FLOAT16_MODES.has(entry.mode) && !loadOnly;
        const compare = (strict) => Object.entries(float.outputs)
          .map(([n, f]) => (outputs[n] ? compareOutput(n, f, outputs[n], strict) : `output '${n}' missing`))
          .filter(Boolean);
        const reasons = compare(exact);
        if (!reasons.length) return {cls: 'ok', cosine: minCosine(float.outputs, outputs)};
        if (exact && await isRandom()) {  // random outputs: shapes and finiteness only
          const loose = compare(false);
          return loose.length ? {cls: 'wrong', reason: loose.join('; ')}
                              : {cls: 'ok', note: 'float outputs are random: shapes and finiteness checked'};
        }
        return {cls: 'wrong', reason: reasons.join('; ')};
      } finally {
        await session.release();
      }
    };

    for (const entry of task.entries) {
      await send({stage: 'entry', idx: entry.idx});
      let result;
      try {
        if ((await ensureFloat()).error) {
          result = {cls: 'not-runnable', reason: float.error};
        } else {
          await send({stage: 'entry', idx: entry.idx});
          result = await check(entry, level);
          if (FAILING.has(result.cls) && level !== 'disabled') {
            await send({stage: 'retry', idx: entry.idx, primary: result});
            const again = await check(entry, 'disabled');
            result.note = again.cls === 'ok' ? 'passes with optimization disabled'
                        : again.cls === result.cls ? 'also with optimization disabled'
                        : `with optimization disabled: ${again.cls}: ${again.reason}`;
          }
        }
      } catch (e) {
        result = {cls: 'invalid', reason: `sweep: ${oneLine(e.message)}`};
      }
      await send({result: {idx: entry.idx, ...result}});
    }
    if (float?.session) await float.session.release();
    await send({done: true});
  });
}

// --- main: classifies what needs no ONNX Runtime, farms out the rest --------------------------

const SIGNALS = Object.fromEntries(Object.entries(os.constants.signals).map(([name, n]) => [n, name]));

const signatures = new Map();  // float model -> graph and opset imports

// The class of an entry from the tool's run alone, or null when ONNX Runtime must decide.
function toolVerdict(entry) {
  const stderr = entry.stderr && fs.existsSync(entry.stderr) ? fs.readFileSync(entry.stderr, 'utf8') : '';
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const message = oneLine(lines.find((l) => /error|cannot|refus|not |unsupported|invalid|malformed|abort|terminate/i.test(l)) ?? lines[0] ?? '',
                          {[entry.float]: '<model>', [entry.quant]: '<output>'});
  const code = Number(entry.exit);
  if (code === 0) {
    if (!fs.existsSync(entry.quant)) return {cls: 'crash', reason: 'exit 0 but no output written'};
    try {
      if (!signatures.has(entry.float)) signatures.set(entry.float, modelInfo(entry.float).signature);
      if (Buffer.compare(modelInfo(entry.quant).signature, signatures.get(entry.float)) === 0) {
        return {cls: 'refused', reason: 'left the model unchanged'};
      }
    } catch (e) {
      return {cls: 'invalid', reason: `unreadable output: ${e.message}`};
    }
    return null;
  }
  if (code === 3 && message) {
    let opset = null;
    try { opset = modelInfo(entry.float).opset; } catch { /* unreadable: a plain refusal */ }
    if (opset !== null && opset < 7) return {cls: 'opset<7', reason: `opset ${opset}: ${message}`};
    return {cls: 'refused', reason: message};
  }
  if (code === 124) return {cls: 'crash', reason: `tool timed out${message ? `: ${message}` : ''}`};
  if (code > 128) return {cls: 'crash', reason: `tool killed by ${SIGNALS[code - 128] ?? `signal ${code - 128}`}${message ? `: ${message}` : ''}`};
  return {cls: 'crash', reason: `exit ${code}${message ? `: ${message}` : ' without a message'}`};
}

async function main(args) {
  if (!args.manifest) throw new Error('--manifest is required');
  const started = Date.now();
  const modeOrder = (m) => (MODES.includes(m) ? MODES.indexOf(m) : MODES.length);
  const entries = fs.readFileSync(args.manifest, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l))
    .sort((a, b) => (a.model < b.model ? -1 : a.model > b.model ? 1 : modeOrder(a.mode) - modeOrder(b.mode) || (a.mode < b.mode ? -1 : 1)))
    .map((e, idx) => ({...e, idx}));
  const results = new Array(entries.length);
  const byModel = new Map();
  for (const e of entries) {
    const verdict = toolVerdict(e);
    if (verdict) results[e.idx] = verdict;
    else {
      if (!byModel.has(e.float)) byModel.set(e.float, {model: e.model, float: e.float, data: e.data, entries: []});
      byModel.get(e.float).entries.push({idx: e.idx, mode: e.mode, quant: e.quant});
    }
  }
  const queue = [...byModel.values()];
  const jobs = Math.max(1, Number(args.jobs ?? 2)), timeout = 1000 * Number(args.timeout ?? 20);
  const script = fileURLToPath(import.meta.url);
  const workerArgs = ['--worker', '--threads', String(args.threads ?? 1), '--ort-optimization', args['ort-optimization'] ?? 'all',
                      '--check', args.check ?? 'exact'];
  let restarts = 0;

  await new Promise((resolveAll, rejectAll) => {
    let running = 0;
    const start = () => {
      const w = {task: null, stage: null, pending: null, timer: null, tail: '', dead: false};
      w.proc = fork(script, workerArgs, {stdio: ['ignore', 'ignore', 'pipe', 'ipc']});
      w.proc.stderr.on('data', (d) => { w.tail = (w.tail + d).slice(-2000); });
      running++;
      const arm = () => {
        clearTimeout(w.timer);
        w.timer = setTimeout(() => { w.timedOut = true; w.proc.kill('SIGKILL'); }, timeout);
      };
      const next = () => {
        clearTimeout(w.timer);
        w.task = queue.shift() ?? null;
        if (!w.task) {
          w.dead = true;
          w.proc.disconnect();
          return;
        }
        w.pending = new Set(w.task.entries.map((e) => e.idx));
        w.stage = null;
        arm();
        w.proc.send({task: w.task});
      };
      w.proc.on('message', (m) => {
        if (m.stage) {
          w.stage = m;
          arm();
        } else if (m.result) {
          const {idx, ...r} = m.result;
          results[idx] = r;
          w.pending.delete(idx);
        } else if (m.done) next();
      });
      w.proc.on('exit', (code, signal) => {
        clearTimeout(w.timer);
        running--;
        if (w.dead && !w.task) {
          if (running === 0 && queue.length === 0) resolveAll();
          return;
        }
        // died on a task: mark the step it was on, requeue the rest of the model
        const message = w.tail.split('\n').filter((l) => l.trim() && !/^\s*(\d+:|at |=|-|#|\[)/.test(l)).at(-1);
        const what = w.timedOut ? `ONNX Runtime hung (> ${timeout / 1000} s)`
                    : `ONNX Runtime crashed (${signal ?? `exit ${code}`}${message ? `: ${oneLine(message)}` : ''})`;
        const stage = w.stage;
        if (!stage || stage.stage === 'float') {
          for (const idx of w.pending) results[idx] = {cls: 'not-runnable', reason: `${what} on the float model`};
          w.pending.clear();
        } else if (stage.stage === 'entry') {
          results[stage.idx] = {cls: 'invalid', reason: `${what} on the output`};
          w.pending.delete(stage.idx);
        } else if (stage.stage === 'retry') {
          results[stage.idx] = {...stage.primary, note: `${what} with optimization disabled`};
          w.pending.delete(stage.idx);
        }
        const rest = w.task.entries.filter((e) => w.pending.has(e.idx));
        if (rest.length) queue.unshift({...w.task, entries: rest});
        restarts++;
        if (restarts > 200) {
          rejectAll(new Error('more than 200 ONNX Runtime crashes; giving up'));
          return;
        }
        if (queue.length) start();
        else if (running === 0) resolveAll();
      });
      w.proc.on('error', (e) => rejectAll(e));
      next();
    };
    if (!queue.length) resolveAll();
    for (let i = 0; i < Math.min(jobs, queue.length); i++) start();
  });

  // --- report ---
  const modes = [...new Set(entries.map((e) => e.mode))].sort((a, b) => modeOrder(a) - modeOrder(b));
  const counts = Object.fromEntries(modes.map((m) => [m, Object.fromEntries(CLASSES.map((c) => [c, 0]))]));
  const total = Object.fromEntries(CLASSES.map((c) => [c, 0]));
  entries.forEach((e) => {
    const r = results[e.idx] ?? {cls: 'invalid', reason: 'sweep: never checked'};
    results[e.idx] = r;
    counts[e.mode][r.cls]++;
    total[r.cls]++;
  });
  const seconds = (Date.now() - started) / 1000;
  const width = Math.max(6, ...modes.map((m) => m.length));
  const row = (label, c) => [label.padEnd(width), ...CLASSES.map((k) => String(c[k]).padStart(k.length)),
                             String(CLASSES.reduce((a, k) => a + c[k], 0)).padStart(5)].join('  ');
  console.log([''.padEnd(width), ...CLASSES, 'total'].join('  '));
  for (const m of modes) console.log(row(m, counts[m]));
  console.log(row('all', total));

  const severity = ['crash', 'invalid', 'wrong', 'not-runnable', 'refused', 'opset<7'];
  const groups = new Map();
  for (const e of entries) {
    const r = results[e.idx];
    if (r.cls === 'ok') continue;
    const reason = r.reason + (r.note ? ` [${r.note}]` : '');
    const key = `${severity.indexOf(r.cls)}\u0000${modes.indexOf(e.mode)}\u0000${reason}`;
    if (!groups.has(key)) groups.set(key, {cls: r.cls, mode: e.mode, reason, models: []});
    groups.get(key).models.push(e.model);
  }
  const sorted = [...groups.entries()].sort(([a], [b]) => {
    const [sa, ma] = a.split('\u0000').map(Number), [sb, mb] = b.split('\u0000').map(Number);
    return sa - sb || ma - mb;
  });
  console.log('\nnot ok (class, mode, models: reason):');
  let lastClass = null;
  for (const [, g] of sorted) {
    if (g.cls !== lastClass) console.log(`\n== ${g.cls}`);
    lastClass = g.cls;
    const names = g.models.length > 1 ? `${g.models.length} models: ${g.models.join(' ')}` : g.models[0];
    console.log(`${g.mode} ${names}: ${g.reason}`);
  }
  const failing = CLASSES.filter((c) => FAILING.has(c)).reduce((a, c) => a + total[c], 0);
  if (args.check === 'load') {  // the cosine of each ok entry (the worst over its float outputs)
    const names = [...new Set(entries.map((e) => e.model))];
    const w = Math.max(6, ...names.map((n) => n.length));
    console.log(`\ncosine to the float model (worst output; random inputs):\n${''.padEnd(w)}  ${modes.map((m) => m.padStart(12)).join('')}`);
    for (const name of names) {
      const cells = modes.map((m) => {
        const e = entries.find((x) => x.model === name && x.mode === m);
        const r = e && results[e.idx];
        return (r && r.cls === 'ok' && r.cosine !== null && r.cosine !== undefined ? r.cosine.toFixed(5) : r ? r.cls : '').padStart(12);
      });
      console.log(`${name.padEnd(w)}  ${cells.join('')}`);
    }
  }
  console.log(`\n${entries.length} entries, ${byModel.size} models checked in ONNX Runtime, ${seconds.toFixed(1)} s, ` +
              `${restarts} ONNX Runtime child restart(s); ${failing} invalid/wrong/crash`);

  if (args.results) {
    fs.writeFileSync(args.results, entries.map((e) => JSON.stringify({model: e.model, mode: e.mode, exit: e.exit, ...results[e.idx]})).join('\n') + '\n');
  }
  if (args.summary) {
    const summary = {
      entries: entries.length, seconds, onnxruntime_restarts: restarts,
      options: {optimization: args['ort-optimization'] ?? 'all', threads: Number(args.threads ?? 1), timeout_s: timeout / 1000},
      counts, total,
      not_ok: entries.filter((e) => results[e.idx].cls !== 'ok')
        .map((e) => ({model: e.model, mode: e.mode, class: results[e.idx].cls, reason: results[e.idx].reason,
                      ...(results[e.idx].note ? {note: results[e.idx].note} : {})})),
    };
    fs.writeFileSync(args.summary, JSON.stringify(summary, null, 1) + '\n');
  }
  process.exitCode = failing ? 1 : 0;
}

const args = parseArgs(process.argv.slice(2));
if (args.worker) {
  worker(args).catch((e) => {
    console.error(`sweep.mjs worker: ${e.stack ?? e.message}`);
    process.exit(2);
  });
} else {
  main(args).catch((e) => {
    console.error(`sweep.mjs: ${e.message}`);
    process.exit(2);
  });
}
