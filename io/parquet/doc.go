// Package parquet reads and writes Parquet tables for papoio (package io) through arrow-go's
// pqarrow: Codec is the papoio.TableCodec that papoio.WithTables takes, and package io/files
// passes it for the papo commands. Parquet has a package of its own because pqarrow pulls in
// gRPC and Arrow Flight (a few hundred packages) that a program reading or writing Arrow IPC
// through papoio does not need.
//
// Files are written Snappy-compressed with the Arrow schema stored (ARROW:schema). A file is
// read in record batches of 4096 rows, and its key-value metadata (papo.temperature and the
// other keys of docs/SCHEMA.md, whether papo or another writer such as DuckDB put them there)
// is restored to the schema, which pqarrow's record reader leaves without it.
//
// The package does not import papoio: its methods use Arrow and standard types only, so
// papoio's own tests read and write Parquet through it.
package parquet
