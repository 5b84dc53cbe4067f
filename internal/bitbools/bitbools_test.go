package bitbools

import (
	"encoding/binary"
	"testing"
)

// TestWord: byte k of Word(b) is 1 exactly when bit k of b is set, for every b.
func TestWord(t *testing.T) {
	for b := range 256 {
		var got [8]byte
		binary.LittleEndian.PutUint64(got[:], Word(byte(b)))
		for k := range 8 {
			if want := byte(b >> k & 1); got[k] != want {
				t.Fatalf("Word(%#x) byte %d = %d; want %d", b, k, got[k], want)
			}
		}
	}
	if Table()[0x81] != Word(0x81) {
		t.Fatal("Table and Word differ")
	}
}
