// Package deptest checks, for the tests of papo's packages, what a package pulls in: it runs
// `go list -deps` on the package and fails the test for any dependency whose import path
// contains a forbidden substring.
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

// Forbid fails t when an import path among the dependencies of pkg (itself included) contains
// one of forbidden, and logs how many packages pkg pulls in. Without a go command on PATH (go
// test puts its own first) the test is skipped.
func Forbid(t testing.TB, pkg string, forbidden ...string) {
	t.Helper()
	ForbidTagged(t, "", pkg, forbidden...)
}

// ForbidTagged is Forbid for pkg built with the comma-separated build tags ("": none).
func ForbidTagged(t testing.TB, tags, pkg string, forbidden ...string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list the dependencies of %s: %v", pkg, err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-tags", tags, "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, msg)
	}
	deps := strings.Fields(string(out))
	if tags != "" {
		pkg += " (tags " + tags + ")"
	}
	t.Logf("%s pulls in %d packages", pkg, len(deps))
	var bad []string
	for _, dep := range deps {
		for _, f := range forbidden {
			if strings.Contains(dep, f) {
				bad = append(bad, dep)
				break
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s pulls in %d packages matching %q (of %d), among them:\n  %s", pkg, len(bad), forbidden,
			len(deps), strings.Join(bad[:min(len(bad), 8)], "\n  "))
	}
}
