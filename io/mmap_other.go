//go:build !unix

package papoio

import (
	"errors"
	"os"
)

// mapFile: this platform's build does not memory-map; IPC files are read with ReadAt.
func mapFile(*os.File, int64) ([]byte, func() error, error) { return nil, nil, errors.ErrUnsupported }
