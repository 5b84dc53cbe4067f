package kernels

import (
	"regexp"
	"slices"
	"testing"
)

// Every kernel entry in the committed PTX takes ParamTypes, in order: the 8-byte words that the
// CUDA engine passes (gorgonia.org/cu copies each launch parameter as 8 bytes).
func TestPTXParams(t *testing.T) {
	entry := regexp.MustCompile(`\.entry\s+(\w+)\s*\(([^)]*)\)`)
	param := regexp.MustCompile(`\.param\s+\.(\w+)\s+(\w+)`)
	found := map[string][]string{}
	for _, m := range entry.FindAllStringSubmatch(PTX, -1) {
		var types []string
		for _, p := range param.FindAllStringSubmatch(m[2], -1) {
			types = append(types, p[1])
		}
		found[m[1]] = types
	}
	if len(found) != len(Kernels) {
		t.Errorf("the PTX has %d entries, want %d (%v)", len(found), len(Kernels), Kernels)
	}
	for _, name := range Kernels {
		types, ok := found[name]
		if !ok {
			t.Errorf("entry %s is not in the PTX", name)
			continue
		}
		if !slices.Equal(types, ParamTypes[:]) {
			t.Errorf("entry %s takes %v, want %v", name, types, ParamTypes)
		}
	}
}
