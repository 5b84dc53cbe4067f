package bitbools

// table[b] is the byte b as eight Go bools (1 or 0 a byte, the least significant bit first), in
// the order a little-endian store of the word writes them.
var table = func() (t [256]uint64) {
	for b := range t {
		for k := range 8 {
			if b>>k&1 != 0 {
				t[b] |= 1 << (8 * k)
			}
		}
	}
	return t
}()

// Table is the table of Word, for assembly that indexes it itself; it must not be written.
func Table() *[256]uint64 { return &table }

// Word is the byte b as eight Go bools, the least significant bit first, in the order a
// little-endian store of the word writes them.
func Word(b byte) uint64 { return table[b] }
