// Package bitbools turns eight bits into eight Go bools with one table load and one 8-byte
// store: for Arrow validity bitmaps (package io) and the lane masks of the AVX-512F kernels
// (package polarity).
package bitbools
