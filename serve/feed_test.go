package serve

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
)

// TestFeed: a request whose first batch is small is read inline, a large one by the read-ahead
// goroutine; either way every batch comes in order, a truncated stream's error comes after the
// batches before it, and stop ends the batches without an error.
func TestFeed(t *testing.T) {
	for _, tc := range []struct {
		name      string
		v         int
		batches   []int
		truncate  bool
		stopAfter int // 0: never
		readAhead bool
		wantRows  []int
		wantErr   bool
	}{
		{name: "small inline", v: 100, batches: []int{16, 16, 12}, wantRows: []int{16, 16, 12}},
		{name: "large read ahead", v: 10000, batches: []int{32, 32, 8}, readAhead: true, wantRows: []int{32, 32, 8}},
		{name: "small truncated", v: 100, batches: []int{16, 16, 12}, truncate: true, wantRows: []int{16, 16}, wantErr: true},
		{name: "large truncated", v: 10000, batches: []int{32, 32, 8}, truncate: true, readAhead: true, wantRows: []int{32, 32}, wantErr: true},
		{name: "small stopped", v: 100, batches: []int{16, 16, 12}, stopAfter: 1, wantRows: []int{16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := 0
			for _, n := range tc.batches {
				rows += n
			}
			data, err := testinput.Stream(testinput.Spec{V: tc.v, Steps: testinput.StepRows(rows, 0), Batches: tc.batches, Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			if tc.truncate {
				data = data[:len(data)-8-tc.batches[len(tc.batches)-1]*tc.v*2] // into the last batch's logits
			}
			rd, err := papoio.NewReader(bytes.NewReader(data), "request", memory.DefaultAllocator, papoio.WithStreamOnly())
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			f := newFeed(rd)
			var got []int
			for b := f.next(); b != nil; b = f.next() {
				got = append(got, b.Input.Rows())
				b.Record.Release()
				if len(got) == 1 && (f.batches != nil) != tc.readAhead {
					t.Errorf("read ahead after a first batch of %d bytes: %v, want %v", recordBytes(b.Record), f.batches != nil, tc.readAhead)
				}
				if len(got) == tc.stopAfter {
					f.stop()
				}
			}
			err = f.wait()
			if (err != nil) != tc.wantErr {
				t.Errorf("error %v, want one: %v", err, tc.wantErr)
			}
			if len(got) != len(tc.wantRows) {
				t.Fatalf("batches of %v rows, want %v", got, tc.wantRows)
			}
			for k := range got {
				if got[k] != tc.wantRows[k] {
					t.Errorf("batches of %v rows, want %v", got, tc.wantRows)
				}
			}
		})
	}
}
