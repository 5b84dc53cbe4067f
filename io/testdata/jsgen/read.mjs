// Reads Arrow IPC files and streams with the JavaScript apache-arrow package (an Arrow
// implementation independent of arrow-go) and prints what it read as JSON, for papoio's
// TestRoundTripJS, which wrote them with papo's own writer:
//
//   node read.mjs <file>...
//
// prints one JSON object whose keys are the paths given:
//
//   {"format": "file" | "stream", "metadata": {key: value},
//    "fields": [{"name", "type", "nullable"}], "batches": [{"rows": n, "columns": [[cell...]...]}]}
//
// Every cell is null or a string that keeps the value exactly: float32 and float64 as the hex of
// their IEEE bits (from the value the reader returns, so -0 and subnormals survive), int64 in
// decimal (the reader's BigInt), int32 in decimal, bool as true/false, utf8 as itself. Any other
// type is an error: the Go test would have to learn it.
import { readFileSync } from 'node:fs';
import * as A from 'apache-arrow';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);

function cellFn(type) {
  if (A.DataType.isFloat(type) && type.precision === A.Precision.SINGLE) {
    return (x) => {
      f32[0] = x;
      return u32[0].toString(16).padStart(8, '0');
    };
  }
  if (A.DataType.isFloat(type) && type.precision === A.Precision.DOUBLE) {
    return (x) => {
      f64[0] = x;
      return u64[0].toString(16).padStart(16, '0');
    };
  }
  if (A.DataType.isInt(type) && type.isSigned && (type.bitWidth === 64 || type.bitWidth === 32)) {
    return (x) => x.toString();
  }
  if (A.DataType.isBool(type)) {
    return (x) => (x ? 'true' : 'false');
  }
  if (A.DataType.isUtf8(type)) {
    return (x) => x;
  }
  throw new Error(`read.mjs: column type ${type} is not handled`);
}

function read(path) {
  const bytes = readFileSync(path);
  const reader = A.RecordBatchReader.from(bytes);
  reader.open();
  const format = reader.isFile() ? 'file' : reader.isStream() ? 'stream' : 'unknown';
  const table = A.tableFromIPC(bytes);
  const fields = table.schema.fields.map((f) => ({ name: f.name, type: String(f.type), nullable: f.nullable }));
  const cells = table.schema.fields.map((f) => cellFn(f.type));
  const batches = table.batches.map((b) => ({
    rows: b.numRows,
    columns: cells.map((cell, c) => {
      const v = b.getChildAt(c);
      const out = [];
      for (let i = 0; i < b.numRows; i++) {
        const x = v.get(i);
        if ((x === null) !== !v.isValid(i)) {
          throw new Error(`${path}: column ${fields[c].name}, row ${i}: get() is ${x} but isValid() is ${v.isValid(i)}`);
        }
        out.push(x === null ? null : cell(x));
      }
      return out;
    }),
  }));
  return { format, metadata: Object.fromEntries(table.schema.metadata), fields, batches };
}

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error('usage: node read.mjs <file>...');
  process.exit(2);
}
const out = {};
for (const p of paths) out[p] = read(p);
console.log(JSON.stringify(out));
