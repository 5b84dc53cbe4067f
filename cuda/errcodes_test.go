package cuda

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// The sticky-error table's numbers are cuda.h's (checked where the toolkit's header is
// installed: CI installs it).
func TestStickyCodesMatchCudaH(t *testing.T) {
	var src []byte
	for _, dir := range []string{os.Getenv("CUDA_HOME"), "/usr/local/cuda", "/usr"} {
		if dir == "" {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "include", "cuda.h")); err == nil {
			src = b
			break
		}
	}
	if src == nil {
		t.Skip("no cuda.h on this machine (install the toolkit with .ci/cuda-toolkit.sh)")
	}
	for code, name := range stickyCodes {
		m := regexp.MustCompile(`(?m)^\s*` + name + `\s*=\s*(\d+)`).FindSubmatch(src)
		if m == nil {
			t.Errorf("%s is not in cuda.h", name)
			continue
		}
		if v, _ := strconv.Atoi(string(m[1])); v != code {
			t.Errorf("%s = %d in cuda.h, %d in stickyCodes", name, v, code)
		}
	}
	if isSticky(2) { // CUDA_ERROR_OUT_OF_MEMORY
		t.Error("out of memory must not disable the device")
	}
}
