// Runs a float model and its quantized version side by side in ONNX Runtime (CPU) on the same
// inputs and checks how closely the quantized outputs follow the float ones.
//
//   node compare.mjs --float F.onnx --quant Q.onnx [inputs] [metrics] [thresholds]
//   node compare.mjs --quant Q.onnx --only-load [inputs]
//
// Inputs: --data DIR (repeatable; ONNX test-data folder, input_N.pb matched to inputs by order;
// output_N.pb there is compared with the float model too), or --random N sets (--seed S) shaped
// from the model's inputs, with --dim NAME=V for symbolic dims (default 1), --float-range LO:HI
// (default -1:1) and --range INPUT=LO:HI (ints default 0:9).
// Metrics: cosine, max/mean abs error, finiteness per output; --top1 OUT (argmax agreement over
// the last axis, and the mean KL divergence of the quantized softmax from the float one there);
// --ppl OUT --ppl-ids INPUT (next-token perplexity ratio, quant / float).
// Thresholds: --min-cosine X [--output NAME ...], --min-top1 X, --max-kl X, --max-ppl-ratio X,
// --finite, --max-abs X. Prints one line per output, then "N passed, M failed"; exit 0 iff all passed.
// --images A.png,B.png (--image-scale S --image-offset O --image-order rgb|bgr --image-layout
// nchw|nhwc): real photos as the first input instead (see imageSets). --digits FILE.csv.gz[:FIRST:COUNT]: handwritten
// digits as a 1-channel image input (see digitSets).
// --save-float DIR writes each input set and ONNX Runtime's float outputs as DIR/test_data_set_N
// (for checking the tool's own executor with `quantize run`). --ort-optimization LEVEL sets ONNX
// Runtime's graph optimization level (disabled, basic, extended, all; default all).
// --quant-outputs DIR takes the quantized model's outputs from DIR/test_data_set_N/output_K.pb
// (written by `quantize run --save DIR`) instead of running it in ONNX Runtime.
// --time-runs N prints the best of N timed runs of the float model per input set (ort_ms).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import ort from 'onnxruntime-node';
import {PNG} from 'pngjs';

function parseArgs(argv) {
  const repeated = new Set(['data', 'dim', 'range', 'output']);
  const flags = new Set(['finite', 'only-load']);
  const args = {data: [], dim: [], range: [], output: []};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const key = a.slice(2);
    if (flags.has(key)) {
      args[key] = true;
      continue;
    }
    if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
    const value = argv[++i];
    if (repeated.has(key)) args[key].push(value);
    else args[key] = value;
  }
  return args;
}

// --- TensorProto (ONNX test data) -----------------------------------------------------------

function readVarint(buf, pos) {
  let value = 0n, shift = 0n;
  for (;;) {
    const b = buf[pos.i++];
    value |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return value;
    shift += 7n;
  }
}

const TYPES = {1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64'};

function decodeTensor(buf) {
  const pos = {i: 0};
  const t = {dims: [], dataType: 0, raw: null, floats: [], ints: [], doubles: [], name: ''};
  while (pos.i < buf.length) {
    const tag = Number(readVarint(buf, pos));
    const field = tag >> 3, wire = tag & 7;
    const len = () => Number(readVarint(buf, pos));
    if (wire === 2) {
      const n = len(), body = buf.subarray(pos.i, pos.i + n);
      pos.i += n;
      const sub = {i: 0};
      if (field === 1) while (sub.i < body.length) t.dims.push(Number(readVarint(body, sub)));
      else if (field === 4) for (let k = 0; k + 4 <= body.length; k += 4) t.floats.push(body.readFloatLE(k));
      else if (field === 5 || field === 7) while (sub.i < body.length) t.ints.push(BigInt.asIntN(64, readVarint(body, sub)));
      else if (field === 8) t.name = body.toString();
      else if (field === 9) t.raw = body;
      else if (field === 10) for (let k = 0; k + 8 <= body.length; k += 8) t.doubles.push(body.readDoubleLE(k));
    } else if (wire === 0) {
      const v = readVarint(buf, pos);
      if (field === 1) t.dims.push(Number(v));
      else if (field === 2) t.dataType = Number(v);
      else if (field === 5 || field === 7) t.ints.push(BigInt.asIntN(64, v));
    } else if (wire === 5) {
      if (field === 4) t.floats.push(buf.readFloatLE(pos.i));
      pos.i += 4;
    } else if (wire === 1) {
      if (field === 10) t.doubles.push(buf.readDoubleLE(pos.i));
      pos.i += 8;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
  }
  const type = TYPES[t.dataType];
  if (!type) throw new Error(`unsupported tensor data type ${t.dataType}`);
  const count = t.dims.reduce((a, b) => a * b, 1);
  let values;  // numbers (or BigInt for int64), as float64-able values
  if (t.raw) {
    const raw = Buffer.from(t.raw);
    const read = {
      float32: (k) => raw.readFloatLE(4 * k), float64: (k) => raw.readDoubleLE(8 * k),
      int32: (k) => raw.readInt32LE(4 * k), int64: (k) => raw.readBigInt64LE(8 * k),
      uint8: (k) => raw[k], int8: (k) => raw.readInt8(k), bool: (k) => raw[k],
      float16: (k) => halfToFloat(raw.readUInt16LE(2 * k)),
    }[type];
    values = Array.from({length: count}, (_, k) => read(k));
  } else {
    values = type === 'float32' ? t.floats : type === 'float64' ? t.doubles
           : type === 'float16' ? t.ints.map((v) => halfToFloat(Number(v))) : t.ints;
  }
  return {name: t.name, type, dims: t.dims, values};
}

// --- float16 ----------------------------------------------------------------------------------

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function floatToHalf(x) {  // round to nearest even
  f32[0] = x;
  const u = u32[0], sign = (u >>> 16) & 0x8000, a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x477ff000) return sign | 0x7c00;
  if (a >= 0x38800000) {
    let h = (a - 0x38000000) >>> 13;
    const rest = a & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
    return sign | h;
  }
  const r = Math.abs(f32[0]) * 2 ** 24, fl = Math.floor(r), d = r - fl;  // subnormal units
  return sign | (d > 0.5 || (d === 0.5 && fl % 2) ? fl + 1 : fl);
}

// --- writing test data (TensorProto: dims 1, data_type 2, name 8, raw_data 9) ----------------

function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}

const TYPE_IDS = Object.fromEntries(Object.entries(TYPES).map(([id, name]) => [name, Number(id)]));

function encodeTensor(tensor, name) {
  const raw = Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  const parts = [];
  for (const d of tensor.dims) parts.push(Buffer.from([0x08, ...varint(d)]));
  parts.push(Buffer.from([0x10, ...varint(TYPE_IDS[tensor.type])]));
  const nameBytes = Buffer.from(name);
  parts.push(Buffer.from([0x42, ...varint(nameBytes.length)]), nameBytes);
  parts.push(Buffer.from([0x4a, ...varint(raw.length)]), raw);
  return Buffer.concat(parts);
}

// --save-float DIR: each input set and the float model's outputs as DIR/test_data_set_N/.
function saveSet(dir, index, inputFeeds, outputs, outputNames) {
  const setDir = path.join(dir, `test_data_set_${index}`);
  fs.mkdirSync(setDir, {recursive: true});
  Object.entries(inputFeeds).forEach(([name, t], k) =>
    fs.writeFileSync(path.join(setDir, `input_${k}.pb`), encodeTensor(t, name)));
  outputNames.forEach((name, k) =>
    fs.writeFileSync(path.join(setDir, `output_${k}.pb`), encodeTensor(outputs[name], name)));
}

// --- inputs -----------------------------------------------------------------------------------

function toTensor(type, values, dims) {
  const n = values.length;
  let data;
  switch (type) {
    case 'float32': data = Float32Array.from(values, Number); break;
    case 'float64': data = Float64Array.from(values, Number); break;
    case 'float16': data = Uint16Array.from(values, (v) => floatToHalf(Number(v))); break;
    case 'int32': data = Int32Array.from(values, Number); break;
    case 'int64': data = BigInt64Array.from(values, (v) => BigInt(v)); break;
    case 'uint8': data = Uint8Array.from(values, Number); break;
    case 'int8': data = Int8Array.from(values, Number); break;
    case 'bool': data = Uint8Array.from(values, (v) => (Number(v) ? 1 : 0)); break;
    default: throw new Error(`unsupported input type ${type}`);
  }
  if (data.length !== n) throw new Error('size mismatch');
  return new ort.Tensor(type, data, dims);
}

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function parseRange(text, what) {
  const [lo, hi] = text.split(':').map(Number);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new Error(`bad range for ${what}: '${text}'`);
  return [lo, hi];
}

// --images A.png,B.png: real photos as the model's first input, NCHW float32 of its declared
// [1, C, H, W] (C 1: luma, 3: --image-order rgb or bgr), bilinear-resized, value =
// pixel (0..255) * --image-scale + --image-offset. Other inputs as in random sets.
// Numeric dims of an input: symbolic ones from --dim NAME=V (default 1).
function resolveShape(shape, args) {
  const dims = Object.fromEntries(args.dim.map((d) => d.split('=')).map(([k, v]) => [k, Number(v)]));
  return shape.map((d) => (typeof d === 'number' && d >= 0 ? d : dims[d] ?? 1));
}

function imageSets(meta, args) {
  const m = meta[0];
  const nhwc = args['image-layout'] === 'nhwc';  // [1, H, W, C] (tf2onnx exports)
  const shape = resolveShape(m.shape, args);
  const [channels, height, width] = nhwc ? [shape[3], shape[1], shape[2]] : shape.slice(1);
  const scale = Number(args['image-scale'] ?? 1), offset = Number(args['image-offset'] ?? 0);
  const order = args['image-order'] ?? 'rgb';
  return args.images.split(',').map((file) => {
    const png = PNG.sync.read(fs.readFileSync(file));
    const px = (x, y, c) => png.data[(y * png.width + x) * 4 + c];
    const sample = (fx, fy, c) => {  // bilinear, pixel centres aligned
      const x = Math.min(Math.max(fx, 0), png.width - 1), y = Math.min(Math.max(fy, 0), png.height - 1);
      const x0 = Math.floor(x), y0 = Math.floor(y);
      const x1 = Math.min(x0 + 1, png.width - 1), y1 = Math.min(y0 + 1, png.height - 1);
      const ax = x - x0, ay = y - y0;
      return (px(x0, y0, c) * (1 - ax) + px(x1, y0, c) * ax) * (1 - ay) +
             (px(x0, y1, c) * (1 - ax) + px(x1, y1, c) * ax) * ay;
    };
    const values = new Array(channels * height * width);
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const fx = (x + 0.5) * png.width / width - 0.5, fy = (y + 0.5) * png.height / height - 0.5;
          let v;
          if (channels === 1) v = 0.299 * sample(fx, fy, 0) + 0.587 * sample(fx, fy, 1) + 0.114 * sample(fx, fy, 2);
          else v = sample(fx, fy, order === 'bgr' ? 2 - c : c);
          values[nhwc ? (y * width + x) * channels + c : (c * height + y) * width + x] =
            v * scale + offset;
        }
      }
    }
    const set = randomSets(meta.slice(1), {...args, random: 1})[0];
    set.inputs[m.name] = {values, dims: nhwc ? [1, height, width, channels] : [1, channels, height, width]};
    set.label = file;
    return set;
  });
}

// --digits FILE.csv.gz[:FIRST:COUNT]: handwritten digits (scikit-learn's copy of the UCI optical
// digits test set: rows of 64 values 0..16 for an 8 x 8 image, then the label) as the model's
// first input [1, 1, H, W], laid out as MNIST's are: the digit bilinear-resized to 20 x 20 and
// centred, ink 0..255 (white on black), times --image-scale plus --image-offset. The label of
// each set is kept: the float model's accuracy on them is printed, to show the input is right.
function digitSets(meta, args) {
  const m = meta[0];
  const [, , height, width] = resolveShape(m.shape, args);
  const [file, first = '0', count = '16'] = args.digits.split(':');
  const scale = Number(args['image-scale'] ?? 1), offset = Number(args['image-offset'] ?? 0);
  const rows = zlib.gunzipSync(fs.readFileSync(file)).toString().trim().split('\n')
    .slice(Number(first), Number(first) + Number(count));
  return rows.map((row, r) => {
    const cells = row.split(',').map(Number);
    const px = (x, y) => cells[Math.min(Math.max(y, 0), 7) * 8 + Math.min(Math.max(x, 0), 7)];
    const box = 20, left = Math.floor((width - box) / 2), top = Math.floor((height - box) / 2);
    const values = new Array(height * width).fill(offset);
    for (let y = 0; y < box; y++) {
      for (let x = 0; x < box; x++) {
        const fx = (x + 0.5) * 8 / box - 0.5, fy = (y + 0.5) * 8 / box - 0.5;
        const x0 = Math.floor(fx), y0 = Math.floor(fy), ax = fx - x0, ay = fy - y0;
        const v = (px(x0, y0) * (1 - ax) + px(x0 + 1, y0) * ax) * (1 - ay) +
                  (px(x0, y0 + 1) * (1 - ax) + px(x0 + 1, y0 + 1) * ax) * ay;
        values[(top + y) * width + left + x] = v / 16 * 255 * scale + offset;
      }
    }
    const set = randomSets(meta.slice(1), {...args, random: 1})[0];
    set.inputs[m.name] = {values, dims: [1, 1, height, width]};
    set.label = `digit ${Number(first) + r}`;
    set.digit = cells[64];
    return set;
  });
}

function randomSets(meta, args) {
  const ranges = Object.fromEntries(args.range.map((r) => {
    const at = r.indexOf('=');
    return [r.slice(0, at), parseRange(r.slice(at + 1), r.slice(0, at))];
  }));
  const floatRange = parseRange(args['float-range'] ?? '-1:1', '--float-range');
  const rand = mulberry32(Number(args.seed ?? 1));
  const sets = [];
  for (let s = 0; s < Number(args.random ?? 1); s++) {
    const set = {};
    for (const m of meta) {
      const shape = resolveShape(m.shape, args);
      const count = shape.reduce((a, b) => a * b, 1);
      const isFloat = m.type.startsWith('float');
      const [lo, hi] = ranges[m.name] ?? (isFloat ? floatRange : [0, 9]);
      const values = Array.from({length: count}, () =>
        isFloat ? lo + (hi - lo) * rand() : Math.floor(lo + (hi - lo + 1) * rand()));
      set[m.name] = {values, dims: shape};
    }
    sets.push({label: `random ${s}`, inputs: set, expected: []});
  }
  return sets;
}

function dataSets(dirs, meta) {
  return dirs.map((dir) => {
    const inputs = {}, expected = [];
    meta.forEach((m, k) => {
      const file = path.join(dir, `input_${k}.pb`);
      if (!fs.existsSync(file)) throw new Error(`${file} missing (input '${m.name}')`);
      const t = decodeTensor(fs.readFileSync(file));
      inputs[m.name] = {values: t.values, dims: t.dims};
    });
    for (let k = 0; fs.existsSync(path.join(dir, `output_${k}.pb`)); k++) {
      expected.push(decodeTensor(fs.readFileSync(path.join(dir, `output_${k}.pb`))));
    }
    return {label: dir, inputs, expected};
  });
}

function feeds(session, set) {
  const out = {};
  for (const m of session.inputMetadata) {
    const v = set.inputs[m.name];
    if (!v) throw new Error(`no value for input '${m.name}'`);
    out[m.name] = toTensor(m.type, v.values, v.dims);
  }
  return out;
}

// --quant-outputs DIR: the quantized model's outputs for input set N, computed elsewhere (by the
// tool's own executor: `quantize run --save DIR`), read from DIR/test_data_set_N/output_K.pb.
function savedOutputs(dir, index, names) {
  return Object.fromEntries(names.map((name, k) => {
    const file = path.join(dir, `test_data_set_${index}`, `output_${k}.pb`);
    if (!fs.existsSync(file)) throw new Error(`${file} missing (output '${name}')`);
    const t = decodeTensor(fs.readFileSync(file));
    return [name, {type: 'float64', data: Float64Array.from(t.values, Number), dims: t.dims}];
  }));
}

function numbers(tensor) {
  if (tensor.type === 'float16') return Array.from(tensor.data, halfToFloat);
  return Array.from(tensor.data, Number);
}

// --- metrics ----------------------------------------------------------------------------------

function logSoftmaxAt(row, index) {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return row[index] - max - Math.log(sum);
}

class Stats {
  constructor() {
    Object.assign(this, {dot: 0, ff: 0, qq: 0, maxAbs: 0, sumAbs: 0, count: 0, finite: true,
                         top1Same: 0, top1Total: 0, kl: 0, nllF: 0, nllQ: 0, nllCount: 0, refDot: 0,
                         refFF: 0, refRR: 0});
  }
  add(f, q) {
    for (let i = 0; i < f.length; i++) {
      if (!Number.isFinite(q[i])) {
        this.finite = false;
        continue;
      }
      this.dot += f[i] * q[i];
      this.ff += f[i] * f[i];
      this.qq += q[i] * q[i];
      const d = Math.abs(f[i] - q[i]);
      this.maxAbs = Math.max(this.maxAbs, d);
      this.sumAbs += d;
      this.count++;
    }
  }
  top1(f, q, last) {
    for (let base = 0; base < f.length; base += last) {
      let a = base, b = base;
      for (let i = base; i < base + last; i++) {
        if (f[i] > f[a]) a = i;
        if (q[i] > q[b]) b = i;
      }
      this.top1Same += a === b;
      this.top1Total++;
      // KL(p_float || p_quant) = sum p_f (log p_f - log p_q), each softmax taken stably.
      const logSum = (v, top) => {
        let sum = 0;
        for (let i = base; i < base + last; i++) sum += Math.exp(v[i] - v[top]);
        return v[top] + Math.log(sum);
      };
      const lf = logSum(f, a), lq = logSum(q, b);
      for (let i = base; i < base + last; i++) {
        const logPf = f[i] - lf;
        this.kl += Math.exp(logPf) * (logPf - (q[i] - lq));
      }
    }
  }
  perplexity(f, q, ids, vocab) {
    for (let t = 0; t + 1 < ids.length; t++) {
      const next = Number(ids[t + 1]);
      this.nllF -= logSoftmaxAt(f.slice(t * vocab, (t + 1) * vocab), next);
      this.nllQ -= logSoftmaxAt(q.slice(t * vocab, (t + 1) * vocab), next);
      this.nllCount++;
    }
  }
  reference(f, r) {
    for (let i = 0; i < f.length; i++) {
      this.refDot += f[i] * r[i];
      this.refFF += f[i] * f[i];
      this.refRR += r[i] * r[i];
    }
  }
  get cosine() { return this.ff && this.qq ? this.dot / Math.sqrt(this.ff * this.qq) : (this.ff === this.qq ? 1 : 0); }
  get refCosine() { return this.refFF && this.refRR ? this.refDot / Math.sqrt(this.refFF * this.refRR) : null; }
  get top1Rate() { return this.top1Total ? this.top1Same / this.top1Total : null; }
  get meanKl() { return this.top1Total ? this.kl / this.top1Total : null; }
  get pplRatio() { return this.nllCount ? Math.exp((this.nllQ - this.nllF) / this.nllCount) : null; }
}

// --- main -------------------------------------------------------------------------------------

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const options = {intraOpNumThreads: 2, graphOptimizationLevel: args['ort-optimization'] ?? 'all',
                   logSeverityLevel: 3};
  const load = async (file) => {
    try {
      return await ort.InferenceSession.create(file, options);
    } catch (e) {
      console.error(`ONNX Runtime cannot load ${file}: ${e.message}`);
      process.exit(1);
    }
  };
  if (!args.quant) throw new Error('--quant is required');
  const quant = await load(args.quant);
  if (args['only-load']) {
    for (const set of randomSets(quant.inputMetadata, args)) await quant.run(feeds(quant, set));
    console.log(`${args.quant}: loads and runs`);
    console.log('1 passed, 0 failed');
    return;
  }
  if (!args.float) throw new Error('--float is required');
  const float = await load(args.float);
  const meta = float.inputMetadata;
  const sets = args.data.length ? dataSets(args.data, meta)
             : args.images ? imageSets(meta, args)
             : args.digits ? digitSets(meta, args) : randomSets(meta, args);
  const stats = Object.fromEntries(float.outputNames.map((n) => [n, new Stats()]));
  for (const name of float.outputNames) {
    if (!quant.outputNames.includes(name)) throw new Error(`the quantized model has no output '${name}'`);
  }
  const started = Date.now();
  const labelled = {count: 0, float: 0, quant: 0};  // --digits: accuracy against the labels
  const argmax = (v) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);
  for (const [index, set] of sets.entries()) {
    const floatFeeds = feeds(float, set);
    const fo = await float.run(floatFeeds);
    if (args['save-float']) saveSet(args['save-float'], index, floatFeeds, fo, float.outputNames);
    if (args['time-runs']) {  // the best of N runs of the float model, for speed comparisons
      let best = Infinity;
      for (let r = 0; r < Number(args['time-runs']); r++) {
        const t0 = process.hrtime.bigint();
        await float.run(floatFeeds);
        best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
      }
      console.log(`ort_ms ${index} ${best.toFixed(3)}`);
    }
    const qo = args['quant-outputs'] ? savedOutputs(args['quant-outputs'], index, float.outputNames)
                                     : await quant.run(feeds(quant, set));
    float.outputNames.forEach((name, k) => {
      const f = numbers(fo[name]), q = numbers(qo[name]), s = stats[name];
      if (qo[name].dims.join() !== fo[name].dims.join()) throw new Error(`output '${name}': shape ${qo[name].dims} != ${fo[name].dims}`);
      s.add(f, q);
      const last = fo[name].dims.at(-1);
      if (args.top1 === name && last > 1) s.top1(f, q, last);
      if (args.ppl === name) s.perplexity(f, q, set.inputs[args['ppl-ids']].values, last);
      if (set.expected[k]) s.reference(f, set.expected[k].values.map(Number));
      if (set.digit !== undefined && k === 0) {
        labelled.count++;
        labelled.float += argmax(f) === set.digit;
        labelled.quant += argmax(q) === set.digit;
      }
    });
  }
  if (labelled.count) {
    console.log(`labels: float model ${labelled.float}/${labelled.count} right, quantized ` +
                `${labelled.quant}/${labelled.count}`);
  }
  const results = [];
  const check = (what, ok) => results.push({what, ok});
  const checked = args.output.length ? args.output : float.outputNames;
  for (const name of float.outputNames) {
    const s = stats[name];
    const parts = [`cosine ${s.cosine.toFixed(6)}`, `max_abs ${s.maxAbs.toPrecision(3)}`,
                   `mean_abs ${(s.sumAbs / Math.max(1, s.count)).toPrecision(3)}`];
    if (s.top1Rate !== null) parts.push(`top1 ${s.top1Rate.toFixed(4)} kl ${s.meanKl.toPrecision(3)}`);
    if (s.pplRatio !== null) parts.push(`ppl x${s.pplRatio.toFixed(4)}`);
    if (s.refCosine !== null) parts.push(`float_vs_reference_cosine ${s.refCosine.toFixed(6)}`);
    parts.push(`finite ${s.finite ? 'yes' : 'NO'}`);
    console.log(`${name}: ${parts.join(' ')}`);
    if (!checked.includes(name)) continue;
    if (args['min-cosine'] !== undefined) check(`${name} cosine >= ${args['min-cosine']}`, s.cosine >= Number(args['min-cosine']));
    if (args['max-abs'] !== undefined) check(`${name} max_abs <= ${args['max-abs']}`, s.maxAbs <= Number(args['max-abs']));
    if (args.finite) check(`${name} finite`, s.finite);
  }
  if (args['min-top1'] !== undefined) {
    const s = stats[args.top1];
    check(`top1 >= ${args['min-top1']}`, s !== undefined && s.top1Rate >= Number(args['min-top1']));
  }
  if (args['max-kl'] !== undefined) {
    const s = stats[args.top1];
    check(`kl <= ${args['max-kl']}`, s !== undefined && s.meanKl <= Number(args['max-kl']));
  }
  if (args['max-ppl-ratio'] !== undefined) {
    const s = stats[args.ppl];
    check(`ppl ratio <= ${args['max-ppl-ratio']}`, s !== undefined && s.pplRatio <= Number(args['max-ppl-ratio']));
  }
  for (const r of results) if (!r.ok) console.log(`FAILED: ${r.what}`);
  console.log(`(${sets.length} input set(s), ${Date.now() - started} ms)`);
  if (args.json) {
    const out = Object.fromEntries(Object.entries(stats).map(([n, s]) => [n, {
      cosine: s.cosine, max_abs: s.maxAbs, mean_abs: s.sumAbs / Math.max(1, s.count), finite: s.finite,
      top1: s.top1Rate, kl: s.meanKl, ppl_ratio: s.pplRatio, float_vs_reference_cosine: s.refCosine}]));
    fs.writeFileSync(args.json, JSON.stringify(out, null, 1));
  }
  const failed = results.filter((r) => !r.ok).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.error(`compare.mjs: ${e.message}`);
  process.exit(2);
});
