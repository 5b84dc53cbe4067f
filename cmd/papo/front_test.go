//go:build !papofront

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/entropy-polarity/papo/internal/deptest"
	"github.com/entropy-polarity/papo/internal/testchild"
	"github.com/entropy-polarity/papo/internal/testinput"
)

// TestFrontEndDependencies: the front end (bin/papo of `make build`) links none of the packages
// whose initialisers and page faults made papo's start ~8-11 ms (bench/RESULTS.md).
func TestFrontEndDependencies(t *testing.T) {
	deptest.ForbidTagged(t, "papofront", "github.com/entropy-polarity/papo/cmd/papo",
		"google.golang.org/grpc", "arrow/flight", "prometheus", "gonum.org/v1/plot", "pqarrow", "arrow/compute",
		"papo/io/parquet", "papo/serve", "papo/report", "papo/bench")
}

// buildFront builds the front end into a new directory and returns its path.
func buildFront(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the front end: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "papo")
	cmd := exec.Command(goTool, "build", "-tags", "papofront", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags papofront: %v\n%s", err, out)
	}
	return bin
}

// TestFrontEnd runs the front end as a user does, with this test binary as papo-full: what it
// runs itself gives the full program's bytes, and what it has not (Parquet, serve, report,
// bench) is handed over whole, or refused with the reason when there is no papo-full.
func TestFrontEnd(t *testing.T) {
	front := buildFront(t)
	full, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.arrow")
	if err := testinput.WriteFile(in, testinput.Spec{V: 300, Steps: testinput.StepRows(40, 0, 1), Seed: 5}); err != nil {
		t.Fatal(err)
	}
	// The full program's output, in this process.
	want := filepath.Join(dir, "want.arrow")
	var stderr bytes.Buffer
	if code := execute([]string{"analyze", in, "-o", want, "--device", "cpu", "--quiet"}, nil, &bytes.Buffer{}, &stderr); code != 0 {
		t.Fatalf("analyze in this process: exit %d: %s", code, stderr.String())
	}

	run := func(t *testing.T, withFull bool, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		cmd := exec.Command(front, args...)
		// PAPO_FULL="" with no papo-full beside the front end: nothing to hand over to.
		fullAt := ""
		if withFull {
			fullAt = full
		}
		cmd.Env = testchild.Env(cliChildEnv+"=1", fullEnv+"="+fullAt, cudaEnv+"=")
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), o.String(), e.String()
		} else if err != nil {
			t.Fatalf("papo %v: %v", args, err)
		}
		return 0, o.String(), e.String()
	}

	t.Run("version", func(t *testing.T) {
		_, out, _ := run(t, false, "version")
		if !strings.Contains(out, "front end") {
			t.Fatalf("papo version = %q; want it to say it is the front end", out)
		}
	})

	t.Run("hand-over", func(t *testing.T) {
		// A papo-full that prints what it was started with: the command and its arguments as
		// typed, and the front end's path for the benchmarks.
		script := filepath.Join(t.TempDir(), "papo-full")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$PAPO_FRONT|$*\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(front, "report", "a b.parquet", "-o", "r.html")
		cmd.Env = testchild.Env(fullEnv + "=" + script)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.TrimSpace(string(out)), front+"|report a b.parquet -o r.html"; got != want {
			t.Fatalf("papo-full started with %q; want %q", got, want)
		}
	})

	t.Run("analyze without papo-full", func(t *testing.T) {
		got := filepath.Join(t.TempDir(), "got.arrow")
		if code, _, errOut := run(t, false, "analyze", in, "-o", got, "--device", "cpu", "--quiet"); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		a, err := os.ReadFile(want)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(got)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("the front end's output (%d bytes) differs from the full program's (%d bytes)", len(b), len(a))
		}
	})

	for _, c := range []struct {
		name string
		args func(tmp string) []string
		// file: an output that exists after a hand-over and not after a refusal; stdout: what
		// papo-full prints.
		file, stdout string
	}{
		{"analyze to Parquet", func(tmp string) []string {
			return []string{"analyze", in, "-o", filepath.Join(tmp, "out.parquet"), "--device", "cpu", "--quiet"}
		}, "out.parquet", ""},
		{"reweight with a Parquet summary", func(tmp string) []string {
			return []string{"reweight", in, "-o", filepath.Join(tmp, "w.arrow"), "--summary", filepath.Join(tmp, "s.parquet"), "--device", "cpu", "--quiet"}
		}, "s.parquet", ""},
		{"serve", func(string) []string { return []string{"serve", "--help"} }, "", "Usage: papo serve"},
		{"report", func(string) []string { return []string{"report", "--help"} }, "", "Usage: papo report"},
		{"bench", func(string) []string { return []string{"bench", "--help"} }, "", "Usage: papo bench"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			code, out, errOut := run(t, true, c.args(tmp)...)
			if code != 0 {
				t.Fatalf("with papo-full: exit %d: %s", code, errOut)
			}
			if !strings.Contains(out+errOut, c.stdout) {
				t.Fatalf("with papo-full: output %q; want papo-full's %q", out+errOut, c.stdout)
			}
			if c.file != "" {
				if b, err := os.ReadFile(filepath.Join(tmp, c.file)); err != nil || !bytes.HasPrefix(b, []byte("PAR1")) {
					t.Fatalf("papo-full's %s: %v; want a Parquet file", c.file, err)
				}
			}

			tmp = t.TempDir()
			code, _, errOut = run(t, false, c.args(tmp)...)
			if code == 0 || !strings.Contains(errOut, "this papo is the front end") || !strings.Contains(errOut, fullBinary) {
				t.Fatalf("without papo-full: exit %d, stderr %q; want an error naming %s", code, errOut, fullBinary)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Fatalf("without papo-full: the refused run left %d files in its output directory", len(left))
			}
		})
	}
}

// TestTimedPapo: the benchmarks time the front end that handed the command over, else this
// program, and refuse a $PAPO_FRONT that is not an absolute path of a file.
func TestTimedPapo(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		front, want string
		ok          bool
	}{
		{"", self, true},
		{self, self, true},
		{"papo", "", false},
		{filepath.Join(t.TempDir(), "missing"), "", false},
	} {
		t.Setenv(frontEnv, c.front)
		got, what, err := timedPapo()
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%s=%q: timedPapo() = %q, %v; want %q (error: %v)", frontEnv, c.front, got, err, c.want, !c.ok)
		}
		if err == nil && what == "" {
			t.Errorf("%s=%q: no description of the timed binary", frontEnv, c.front)
		}
	}
}
