// Writes papo input files with the JavaScript apache-arrow package (an Arrow implementation
// independent of arrow-go), for papoio's TestInteropJS:
//
//   node gen.mjs <dir>
//
// writes <dir>/{float32,float16,bfloat16}.{arrow,arrows}: IPC file and stream, two record
// batches of 9 and 4 rows, V = 11. Every value follows a formula that io/interop_test.go
// repeats; change both together.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as A from 'apache-arrow';

const V = 11;
const SIZES = [9, 4];

// A multiple of 1/16 in [-8, 8): exact in float32, float16 and bfloat16.
const logit = (r, j) => (((r * 131 + j * 71) % 257) - 128) / 16;

// bfloat16 bits: the top half of the float32 bits (exact for the values above).
const bf16 = (v) => new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16;

function bitmap(n, pred) {
  const out = new Uint8Array(Math.ceil(n / 8));
  for (let i = 0; i < n; i++) if (pred(i)) out[i >> 3] |= 1 << (i & 7);
  return out;
}

function count(n, pred) {
  let c = 0;
  for (let i = 0; i < n; i++) if (pred(i)) c++;
  return c;
}

function schemaFor(dtype, onChild) {
  const elemType = { float32: new A.Float32(), float16: new A.Float16(), bfloat16: new A.Uint16() }[dtype];
  const bfMeta = new Map([['papo.dtype', 'bfloat16']]);
  const isBF = dtype === 'bfloat16';
  const item = new A.Field('item', elemType, false, isBF && onChild ? bfMeta : null);
  const logits = new A.Field('logits', new A.FixedSizeList(V, item), false, isBF && !onChild ? bfMeta : null);
  return new A.Schema(
    [
      logits,
      new A.Field('token_id', new A.Int32(), false),
      new A.Field('advantage', new A.Float64(), true),
      new A.Field('step', new A.Int64(), false),
      new A.Field('mask', new A.Bool(), true),
      new A.Field('sequence_id', new A.Int64(), false),
    ],
    new Map([
      ['papo.temperature', '0.5'],
      ['papo.run_id', 'js'],
    ]),
  );
}

function batch(schema, dtype, first, n) {
  const values = dtype === 'float32' ? new Float32Array(n * V) : new Uint16Array(n * V);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < V; j++) {
      const v = logit(first + i, j);
      values[i * V + j] = dtype === 'float32' ? v : dtype === 'float16' ? A.util.float64ToUint16(v) : bf16(v);
    }
  }
  const logitsType = schema.fields[0].type;
  const child = A.makeData({ type: logitsType.children[0].type, length: n * V, nullCount: 0, data: values });
  const logits = A.makeData({ type: logitsType, length: n, nullCount: 0, child });
  const row = (f) => Array.from({ length: n }, (_, i) => f(first + i));
  const hasAdvantage = (i) => (first + i) % 5 !== 3;
  const maskValid = (i) => first + i !== 10; // a null mask counts as trained
  const children = [
    logits,
    A.makeData({ type: new A.Int32(), length: n, nullCount: 0, data: Int32Array.from(row((r) => (r * 37) % V)) }),
    A.makeData({
      type: new A.Float64(),
      length: n,
      nullCount: n - count(n, hasAdvantage),
      nullBitmap: bitmap(n, hasAdvantage),
      data: Float64Array.from(row((r) => ((r % 7) - 3) / 4)),
    }),
    A.makeData({ type: new A.Int64(), length: n, nullCount: 0, data: BigInt64Array.from(row((r) => BigInt(100 + Math.floor(r / 4)))) }),
    A.makeData({
      type: new A.Bool(),
      length: n,
      nullCount: n - count(n, maskValid),
      nullBitmap: bitmap(n, maskValid),
      data: bitmap(n, (i) => (first + i) % 6 !== 1),
    }),
    A.makeData({ type: new A.Int64(), length: n, nullCount: 0, data: BigInt64Array.from(row((r) => BigInt(Math.floor(r / 3)))) }),
  ];
  const data = A.makeData({ type: new A.Struct(schema.fields), length: n, nullCount: 0, children });
  return new A.RecordBatch(schema, data);
}

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node gen.mjs <dir>');
  process.exit(2);
}
for (const dtype of ['float32', 'float16', 'bfloat16']) {
  for (const [ext, Writer, onChild] of [
    ['arrow', A.RecordBatchFileWriter, false],
    ['arrows', A.RecordBatchStreamWriter, true],
  ]) {
    const schema = schemaFor(dtype, onChild);
    let first = 0;
    const batches = SIZES.map((n) => {
      const b = batch(schema, dtype, first, n);
      first += n;
      return b;
    });
    writeFileSync(join(dir, `${dtype}.${ext}`), Writer.writeAll(batches).toUint8Array(true));
  }
}
