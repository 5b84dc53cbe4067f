//go:build !papofront

package main

import (
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/io/files"
)

// This is the full papo: every command and every file format (`go build ./cmd/papo`, and
// bin/papo-full of `make build`, which bin/papo, the front end, hands commands over to).
const frontEnd = false

// tableOptions gives papoio the Parquet codec (package io/files).
func tableOptions() []papoio.Option { return []papoio.Option{files.Tables()} }
