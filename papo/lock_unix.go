//go:build unix

package papo

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockState takes the run state's lock file (an flock, released when the process dies), so
// that two papo processes never write one state: the second is refused at once.
func lockState(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666) // less the umask
	if err != nil {
		return nil, fmt.Errorf("run state lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("run state lock %s is held by another process: one run state has one writer at a time", path)
		}
		return nil, fmt.Errorf("run state lock %s: %w", path, err)
	}
	return f, nil
}
