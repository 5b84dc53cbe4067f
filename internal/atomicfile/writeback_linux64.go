//go:build linux && (amd64 || arm64)

package atomicfile

import (
	"os"
	"syscall"
)

// startWriteback asks Linux to start writing the dirty pages of [off, off+n) of f to its device
// without waiting for them (sync_file_range with SYNC_FILE_RANGE_WRITE only). Write does not
// report its error: a file system without it (EINVAL, ESPIPE) still writes the data at Sync, and
// a device error shows there.
func startWriteback(f *os.File, off, n int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, fd, uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE (linux/fs.h): start writeback, wait for nothing.
const syncFileRangeWrite = 2
