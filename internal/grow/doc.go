// Package grow reserves capacity in slices that are appended to in large pieces.
//
// append grows a large slice by about 1.25× at a time: a column appended to batch by batch up to
// 4M rows in batches of 131,072 is then copied into fresh memory about fifteen times, and the copies and their page faults
// cost more than the appends (a quarter of papo analyze's CPU on a 4M-row step). To doubles, so
// the memory a column ever occupies is at most twice its final size.
package grow
