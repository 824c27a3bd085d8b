// The protobuf wire format, as far as the test scripts read ONNX files (no schema: fields by
// number).

export function varint(buf, pos) {  // as a Number: tags, lengths, small values
  let value = 0, mul = 1;
  for (;;) {
    const b = buf[pos.i++];
    if (b === undefined) throw new Error('truncated protobuf');
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return value;
    mul *= 128;
  }
}

// Calls visit(field, wire, value, buf, pos) for each field; value is a subarray for wire type 2,
// a Number for varints (visit may re-read it from start with varintBig), else the offset.
export function scan(buf, visit) {
  const pos = {i: 0};
  while (pos.i < buf.length) {
    const tag = varint(buf, pos), field = Math.floor(tag / 8), wire = tag & 7;
    const start = pos.i;
    if (wire === 0) visit(field, wire, varint(buf, pos), buf, start);
    else if (wire === 2) {
      const n = varint(buf, pos);
      const body = buf.subarray(pos.i, pos.i + n);
      pos.i += n;
      visit(field, wire, body, buf, start);
    } else if (wire === 5) { visit(field, wire, pos.i, buf, start); pos.i += 4; }
    else if (wire === 1) { visit(field, wire, pos.i, buf, start); pos.i += 8; }
    else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}
