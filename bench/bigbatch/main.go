//go:build unix

// Command bigbatch writes an Arrow IPC file that holds one record batch of N float32 logits rows
// of vocabulary V (with token_id and advantage), for measuring papo analyze's memory on batches
// too large to copy (issue 12: 622 MB and 10 GB). It never holds the batch in memory: the logits
// are generated into a scratch file, memory-mapped, and handed to arrow-go's IPC file writer as
// the values buffer of one record batch.
//
//	go run ./bench/bigbatch -o big.arrow -tokens 16448   # 10.0 GB at V = 151,936
//	/usr/bin/time -v papo analyze big.arrow -o out.arrow  # then read "Maximum resident set size"
//
// Measure anonymous memory (RssAnon in /proc/PID/status) rather than the resident set: the
// mapped file's pages count in the latter and belong to the page cache.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/polarity"
)

func main() {
	out := flag.String("o", "", "output IPC file")
	tokens := flag.Int("tokens", 1024, "rows of the one record batch")
	v := flag.Int("vocab", 151936, "vocabulary size V")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if *out == "" || *tokens < 1 || *v < 1 {
		fmt.Fprintln(os.Stderr, "usage: bigbatch -o OUT [-tokens N] [-vocab V] [-seed S]")
		os.Exit(2)
	}
	if err := write(*out, *tokens, *v, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "bigbatch:", err)
		os.Exit(1)
	}
}

func write(path string, n, v int, seed uint64) error {
	scratch, err := os.CreateTemp("", "bigbatch-logits-")
	if err != nil {
		return err
	}
	defer os.Remove(scratch.Name())
	defer scratch.Close()
	rng := rand.New(rand.NewPCG(seed, 2))
	ids := make([]int32, n)
	adv := make([]float64, n)
	row := make([]float32, v)
	bw := bufio.NewWriterSize(scratch, 4<<20)
	for r := range n {
		for j := range row {
			row[j] = float32(2 * rng.NormFloat64())
		}
		ids[r] = int32(rng.IntN(v))
		row[ids[r]] += 6
		adv[r] = rng.NormFloat64()
		if err := binary.Write(bw, binary.LittleEndian, row); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	size := n * v * 4
	data, err := syscall.Mmap(int(scratch.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %s: %w", scratch.Name(), err)
	}
	defer syscall.Munmap(data)

	schema := papoio.InputSchema(v, polarity.Float32, papoio.InputColumns{Batch: polarity.Batch{Advantage: adv}}, nil)
	values := array.NewData(arrow.PrimitiveTypes.Float32, n*v, []*memory.Buffer{nil, memory.NewBufferBytes(data)}, nil, 0, 0)
	defer values.Release()
	logitsData := array.NewData(schema.Field(0).Type, n, []*memory.Buffer{nil}, []arrow.ArrayData{values}, 0, 0)
	defer logitsData.Release()
	logits := array.MakeFromData(logitsData)
	defer logits.Release()
	idArr := array.NewInt32Builder(memory.DefaultAllocator)
	idArr.AppendValues(ids, nil)
	advArr := array.NewFloat64Builder(memory.DefaultAllocator)
	advArr.AppendValues(adv, nil)
	cols := []arrow.Array{logits, idArr.NewArray(), advArr.NewArray()}
	rec := array.NewRecord(schema, cols, int64(n))
	defer rec.Release()

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(schema))
	if err != nil {
		f.Close()
		return err
	}
	if err := w.Write(rec); err != nil {
		f.Close()
		return err
	}
	if err := w.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bigbatch: wrote %d tokens × V=%d float32 (%.2f GB of logits) in one record batch to %s\n",
		n, v, float64(size)/1e9, path)
	return nil
}
