//go:build unix

package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCreateRespectsUmask: a committed file has mode 0666 less the umask, as os.Create gives
// (0600 under umask 077, where it was always 0644 before), both for a new file and over an
// existing one. The test sets the process's umask, so it does not run in parallel.
func TestCreateRespectsUmask(t *testing.T) {
	for _, umask := range []int{0o077, 0o022, 0o002} {
		old := syscall.Umask(umask)
		path := filepath.Join(t.TempDir(), "state.json")
		for _, round := range []string{"new", "over an existing file"} {
			if err := WriteFile(path, []byte("{}")); err != nil {
				syscall.Umask(old)
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				syscall.Umask(old)
				t.Fatal(err)
			}
			if want := os.FileMode(0o666 &^ umask); fi.Mode().Perm() != want {
				t.Errorf("umask %03o, %s: mode %v, want %v", umask, round, fi.Mode().Perm(), want)
			}
		}
		syscall.Umask(old)
	}
}
