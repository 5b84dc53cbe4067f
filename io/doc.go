// Package papoio reads and writes papo's Arrow contract (docs/SCHEMA.md): token rows of
// logits with their sampled token and advantage in, per-token entropy and polarity out.
//
// Readers accept the Arrow IPC file and stream formats (auto-detected from the first bytes; an
// IPC file arriving through a pipe is spooled to a temporary file) and yield one record batch
// at a time, so memory is bounded by the batches in flight, not by the input's size. Columns are
// zero-copy views of the message body (arrow-go v18), which is why Batch.Passthrough copies the
// small columns a caller keeps. Each Batch views its
// record as a polarity.Batch without copying the logits (float32 values, or float16 and
// bfloat16 bits).
//
// What the reader checks, and what it leaves to others:
//   - logits: fixed_size_list<float32|float16>[V], fixed_size_list<uint16>[V] with field
//     metadata papo.dtype=bfloat16 (on the logits field or its element field), or list and
//     large_list forms whose rows all have V values (V is set by the input's first row);
//     arrow.fixed_shape_tensor arrives as its fixed_size_list storage and is accepted. A null
//     row or a null value inside a row is an error. The values themselves are not checked for
//     NaN or +Inf: the engines find those in their single pass over each row, and a scan here
//     would double the memory traffic of the whole program.
//   - token_id (int32 or int64): required, never null, in [0, V).
//   - advantage (float32 or float64): null means "no advantage" for that token; NaN and ±Inf
//     are errors. old_logprob (float32 or float64): null means absent; NaN and +Inf are errors.
//   - mask (bool): a null mask counts as true (the token is trained on), as if the column
//     were absent for that row. step (int64 or int32) must not be null. sequence_id, group_id
//     and position are carried through; their types are checked (int64 or int32).
//   - Other columns are carried through to the output unchanged; an input column named like a
//     computed one (say "entropy") is renamed with CollisionPrefix.
//   - Schema metadata papo.temperature, papo.lr, papo.clip_low, papo.clip_high become
//     polarity.Params (polarity.DefaultParams for absent keys); papo.run_id is kept in Meta.
//
// Errors name the input, the batch and the row (within the batch, and within the whole
// input), the column, and what was expected:
//
//	logits.arrow: batch 3, row 17 (input row 3089): token_id 160000 is outside [0, 151936)
//
// Corrupt input is an error, never a crash: every Arrow metadata flatbuffer is verified before
// arrow-go decodes it, every buffer is checked against its array's length and offsets, single
// allocations are capped (WithMaxBufferBytes), and the few arrow-go calls that can still panic
// on corrupt data run under a recover that turns the panic into an error naming the batch.
//
// Open also reads CSV and JSONL tables, chosen by the extension. Writers choose the format from
// the output's extension (.arrow, .arrows, .parquet, .csv, .jsonl; "-" is an IPC stream on
// standard output) and write atomically: the output appears only when it is complete, and Abort
// leaves what was there before.
//
// Parquet is not implemented here: arrow-go's pqarrow pulls in gRPC and Arrow Flight, which a
// trainer that imports papoio for Arrow IPC does not need. A .parquet path is read and written
// through the TableCodec given with WithTables, io/parquet's Codec; package io/files passes it
// to Open, OpenOutput, Create, FinishSummary, FinishPartials and ReadPartials, and the papo
// commands use io/files. Without a codec, a .parquet path is an error naming the file and those
// two packages.
package papoio
