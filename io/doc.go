// Package papoio reads and writes papo's Arrow contract (../shared/SCHEMA.md): token rows of
// logits with their sampled token and advantage in, per-token entropy and polarity out.
//
// Readers accept the Arrow IPC file and stream formats (auto-detected) and yield one record
// batch at a time, so memory stays bounded whatever the input size. Every row a computation
// needs is validated, and errors name the file, batch, row and column. Writers choose the
// format from the output's extension (.arrow, .arrows, .parquet, .csv, .jsonl) and write
// atomically: the output appears only when it is complete.
package papoio
