#!/usr/bin/env node
// A papo serve client with the JavaScript apache-arrow package (docs/PROTOCOL.md).
//
//   node client.mjs --connect unix:///run/papo.sock|tcp://127.0.0.1:7878|tls://host:7878 \
//       --in rollouts.arrow [--in more.arrows ...] [--out reply.arrows ...] \
//       [--meta papo.request=reweight --meta papo.run_id=run-1 ...] [--batch-rows N] [--half-close]
//
// Each --in is one request on the same connection, in order; its reply's per-token output goes
// to the matching --out (an Arrow IPC stream file). The status of each request is printed as one
// JSON line on stdout; the exit status is 1 when a request failed. The token, which the server
// requires on TCP, comes from PAPO_TOKEN; PAPO_TLS_CA names the CA file for tls://.
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import { Message, RecordBatch, RecordBatchStreamWriter, Schema, tableFromIPC } from 'apache-arrow';

// connect opens unix:///path, tcp://host:port or tls://host:port (papo serve --tls-cert; the
// certificate is checked against PAPO_TLS_CA, a PEM file, when set, else the system's roots).
export function connect(address) {
  const url = new URL(address);
  const opts = url.protocol === 'unix:' ? { path: decodeURIComponent(url.pathname) }
    : { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) };
  return new Promise((resolve, reject) => {
    let socket;
    if (url.protocol === 'tls:') {
      if (process.env.PAPO_TLS_CA) opts.ca = readFileSync(process.env.PAPO_TLS_CA);
      opts.servername = net.isIP(opts.host) ? undefined : opts.host;
      socket = tls.connect(opts, () => resolve(socket));
    } else {
      socket = net.connect(opts, () => resolve(socket));
    }
    socket.once('error', reject);
  });
}

// ByteReader reads exact byte counts from a socket.
class ByteReader {
  constructor(socket) {
    this.it = socket[Symbol.asyncIterator]();
    this.buf = Buffer.alloc(0);
  }

  // read returns n bytes, or null at a clean end before the first of them.
  async read(n) {
    while (this.buf.length < n) {
      const { value, done } = await this.it.next();
      if (done) {
        if (this.buf.length === 0) return null;
        throw new Error(`papo: the connection ended inside a message (${this.buf.length} of ${n} bytes)`);
      }
      this.buf = this.buf.length ? Buffer.concat([this.buf, value]) : value;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  // stream reads one Arrow IPC stream, up to and including its end-of-stream marker, and
  // returns its bytes: a connection carries several streams one after the other, so the
  // stream's end has to be found message by message.
  async stream() {
    const parts = [];
    for (;;) {
      const prefix = await this.read(8);
      if (prefix === null) throw new Error('papo: the server closed the connection');
      if (prefix.readUInt32LE(0) !== 0xffffffff) throw new Error('papo: the reply is not an Arrow IPC stream');
      parts.push(prefix);
      const metaLen = prefix.readInt32LE(4);
      if (metaLen === 0) return Buffer.concat(parts);
      const meta = await this.read(metaLen);
      parts.push(meta);
      const body = Number(Message.decode(meta).bodyLength);
      if (body > 0) parts.push(await this.read(body));
    }
  }
}

// Client sends requests one after the other on one connection and reads each reply: the
// per-token output stream, then the status stream (docs/PROTOCOL.md).
export class Client {
  constructor(socket) {
    this.socket = socket;
    this.reader = new ByteReader(socket);
    socket.on('error', (err) => { this.error = err; });
  }

  // request sends the batches of table with metadata (an object of strings) added to its
  // schema's, and resolves to {schema, batches, status, summary}: the reply's per-token
  // output, the status metadata (papo.status, papo.error, ...) and the per-step summary. With
  // rows, batches are re-cut to at most that many rows each.
  async request(table, metadata = {}, { rows = 0, halfClose = false } = {}) {
    const md = new Map(table.schema.metadata);
    for (const [k, v] of Object.entries(metadata)) md.set(k, String(v));
    if (process.env.PAPO_TOKEN && !md.has('papo.token')) md.set('papo.token', process.env.PAPO_TOKEN);
    const schema = new Schema(table.schema.fields, md);
    const writer = new RecordBatchStreamWriter();
    writer.reset(undefined, schema);
    for (const b of table.batches) {
      const step = rows > 0 ? rows : b.numRows;
      for (let lo = 0; lo < b.numRows; lo += step) {
        writer.write(new RecordBatch(schema, b.slice(lo, Math.min(lo + step, b.numRows)).data));
      }
    }
    writer.finish();
    // Write and read at once: the reply starts before the request has been read to its end.
    const sent = this.#send(writer.toUint8Array(true), halfClose);
    sent.catch(() => {}); // a server that refused the request may stop reading it
    const data = tableFromIPC(await this.reader.stream());
    const status = tableFromIPC(await this.reader.stream());
    return { schema: data.schema, batches: data.batches, status: Object.fromEntries(status.schema.metadata), summary: status };
  }

  #send(bytes, halfClose) {
    return new Promise((resolve, reject) => {
      this.socket.write(bytes, (err) => {
        if (err) return reject(err);
        if (halfClose) this.socket.end();
        resolve();
      });
    });
  }

  close() { this.socket.end(); }
}

function parseArgs(argv) {
  const a = { in: [], out: [], meta: {}, rows: 0, halfClose: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === '--connect') a.connect = v();
    else if (k === '--in') a.in.push(v());
    else if (k === '--out') a.out.push(v());
    else if (k === '--meta') { const [key, ...rest] = v().split('='); a.meta[key] = rest.join('='); }
    else if (k === '--batch-rows') a.rows = Number(v());
    else if (k === '--half-close') a.halfClose = true;
    else throw new Error(`client.mjs: unknown argument ${k}`);
  }
  if (!a.connect || a.in.length === 0) throw new Error('client.mjs: --connect and --in are required');
  return a;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const client = new Client(await connect(args.connect));
  let failed = false;
  for (const [i, path] of args.in.entries()) {
    const last = i === args.in.length - 1;
    const reply = await client.request(tableFromIPC(readFileSync(path)), args.meta,
      { rows: args.rows, halfClose: args.halfClose && last });
    if (args.out[i]) {
      const w = new RecordBatchStreamWriter();
      w.reset(undefined, reply.schema);
      for (const b of reply.batches) w.write(b);
      w.finish();
      writeFileSync(args.out[i], w.toUint8Array(true));
    }
    const rows = reply.batches.reduce((n, b) => n + b.numRows, 0);
    console.log(JSON.stringify({ request: i, rows, ...reply.status }));
    failed ||= reply.status['papo.status'] !== 'ok';
  }
  client.close();
  process.exitCode = failed ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => { console.error(err.message); process.exitCode = 2; });
}
