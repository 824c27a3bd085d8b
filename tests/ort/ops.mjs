// Lists the ops of an ONNX model, in every graph (If/Loop/Scan bodies too), as "domain.Op count"
// lines (the default domain as "ai.onnx"). With --standard [--allow domain.Op,...]: exits 1,
// naming them, when any op is outside the standard domains (ai.onnx, ai.onnx.ml) and the list.
//
//   node ops.mjs MODEL.onnx [--standard [--allow com.microsoft.QuantizeLinear,...]]
import fs from 'node:fs';
import {scan} from './proto.mjs';

const [file, ...rest] = process.argv.slice(2);
const standard = rest.includes('--standard');
const allowAt = rest.indexOf('--allow');
const allowed = new Set(allowAt >= 0 ? rest[allowAt + 1].split(',') : []);

const counts = new Map();
function walkGraph(graph) {  // GraphProto: node = 1
  scan(graph, (field, wire, value) => { if (field === 1 && wire === 2) walkNode(value); });
}
function walkNode(node) {  // NodeProto: op_type = 4, attribute = 5, domain = 7
  let op = '', domain = '';
  scan(node, (field, wire, value) => {
    if (wire !== 2) return;
    if (field === 4) op = value.toString();
    else if (field === 7) domain = value.toString();
    else if (field === 5) {  // AttributeProto: g = 6, graphs = 11
      scan(value, (f, w, v) => { if (w === 2 && (f === 6 || f === 11)) walkGraph(v); });
    }
  });
  const key = `${domain || 'ai.onnx'}.${op}`;
  counts.set(key, (counts.get(key) ?? 0) + 1);
}
scan(fs.readFileSync(file), (field, wire, value) => { if (field === 7 && wire === 2) walkGraph(value); });

let foreign = 0;
for (const [key, n] of [...counts].sort()) {
  const ok = key.startsWith('ai.onnx.') || allowed.has(key);  // ai.onnx and ai.onnx.ml
  console.log(`${key} ${n}${standard && !ok ? '  <- not a standard ONNX op' : ''}`);
  if (!ok) foreign++;
}
if (standard && foreign > 0) {
  console.log(`FAILED: ${foreign} op type(s) outside standard ONNX`);
  process.exit(1);
}
