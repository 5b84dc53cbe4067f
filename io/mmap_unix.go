//go:build unix

package papoio

import (
	"os"
	"syscall"
)

// mapFile maps the first size bytes of f read-only. The mapping shares the page cache: reading
// a record batch from it neither copies nor allocates, whatever the batch's size.
func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil, syscall.EINVAL
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}
