//go:build !unix

package papo

import (
	"fmt"
	"os"
)

// lockState opens the run state's lock file. Outside unix there is no flock: papo does not
// stop a second writer there, and the state must have one writer by arrangement.
func lockState(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666) // less the umask
	if err != nil {
		return nil, fmt.Errorf("run state lock: %w", err)
	}
	return f, nil
}
