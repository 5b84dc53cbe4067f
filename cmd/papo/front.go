//go:build papofront

package main

import papoio "github.com/entropy-polarity/papo/io"

// This is papo's front end (`make build` installs it as bin/papo): analyze, reweight and stats
// on Arrow IPC, CSV and JSONL, gen, probe, version and help, in a binary that links about a
// third of the full program's packages and so starts in ~2.5 ms instead of ~8–11 ms (the
// package initialisers and the page faults of gRPC, Arrow Flight, Prometheus, gonum/plot and
// Parquet; bench/RESULTS.md). Every other command, and any run that reads or writes a .parquet
// file, is handed over whole to papo-full (handOver).
const frontEnd = true

// tableOptions: the front end has no table codec; runs with Parquet go to papo-full.
func tableOptions() []papoio.Option { return nil }

func runServe(env *environment, args []string) error  { return handOver(env, "serve", args) }
func runReport(env *environment, args []string) error { return handOver(env, "report", args) }
func runBench(env *environment, args []string) error  { return handOver(env, "bench", args) }
