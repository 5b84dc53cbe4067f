//go:build unix

package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/entropy-polarity/papo/internal/testchild"
	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
)

// The transaction tests run this test binary as papo itself (TestMain dispatches on
// cliChildEnv) with a hook that, at the n-th time the run reaches a point ("batch:5",
// "finished:1"), kills the process with SIGKILL or sends it SIGINT (Ctrl-C) and goes on.
const (
	cliChildEnv  = "PAPO_TEST_CLI_CHILD"
	cliAtEnv     = "PAPO_TEST_CLI_AT"     // point:n
	cliSignalEnv = "PAPO_TEST_CLI_SIGNAL" // KILL or INT
)

func TestMain(m *testing.M) {
	if os.Getenv(cliChildEnv) != "" {
		env := &environment{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
		if at := os.Getenv(cliAtEnv); at != "" {
			point, count, _ := strings.Cut(at, ":")
			want, _ := strconv.Atoi(count)
			sig := syscall.SIGKILL
			if os.Getenv(cliSignalEnv) == "INT" {
				sig = syscall.SIGINT
			}
			seen := 0
			env.at = func(p string) {
				if p != point {
					return
				}
				if seen++; seen == want {
					syscall.Kill(os.Getpid(), sig)
					if sig == syscall.SIGKILL {
						select {}
					}
					// SIGINT is delivered asynchronously: give signal.NotifyContext time to
					// cancel the run's context before the run goes on.
					time.Sleep(200 * time.Millisecond)
				}
			}
		}
		os.Exit(executeIn(env, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// child runs papo in a new process; at is "" or point:n, sig "KILL" or "INT".
func child(t *testing.T, at, sig string, args ...string) (exitCode int, killed bool, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = testchild.Env(cliChildEnv+"=1", cliAtEnv+"="+at, cliSignalEnv+"="+sig)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		ws := ee.Sys().(syscall.WaitStatus)
		return ee.ExitCode(), ws.Signaled() && ws.Signal() == syscall.SIGKILL, errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, false, errb.String()
}

// txnSpec is the case: 8 steps of 40 rows in batches of 32, so that batches span
// steps; bad puts a NaN logit in step 4.
func txnSpec(bad bool) testinput.Spec {
	s := testinput.Spec{V: 257, Steps: testinput.StepRows(40, 0, 1, 2, 3, 4, 5, 6, 7), Seed: 11}
	if bad {
		s.Edit = func(c *papoio.InputColumns) { c.Batch.Logits.F32[170*257+5] = float32(math.NaN()) }
	}
	return s
}

// outcome is what a run leaves in its directory: output, summary and state (nil: absent), and
// any other file (temporary files, a journal).
type outcome struct {
	out, summary, state []byte
	others              []string
}

func look(t *testing.T, dir string) outcome {
	t.Helper()
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil
		}
		return data
	}
	o := outcome{out: read("out.arrow"), summary: read("summary.csv"), state: read("state.json")}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		switch e.Name() {
		case "out.arrow", "summary.csv", "state.json", "state.json.lock", "in.arrow", "bad.arrow":
		default:
			o.others = append(o.others, e.Name())
		}
	}
	return o
}

func (o outcome) equal(p outcome) bool {
	return bytes.Equal(o.out, p.out) && bytes.Equal(o.summary, p.summary) && bytes.Equal(o.state, p.state) &&
		slices.Equal(o.others, p.others)
}

func (o outcome) String() string {
	return fmt.Sprintf("output %d bytes, summary %d bytes, state %d bytes, other files %v", len(o.out), len(o.summary), len(o.state), o.others)
}

// txnDir makes a run directory with the good input (in.arrow) and the bad one (bad.arrow).
func txnDir(t *testing.T) string {
	dir := t.TempDir()
	for name, bad := range map[string]bool{"in.arrow": false, "bad.arrow": true} {
		if err := testinput.WriteFile(filepath.Join(dir, name), txnSpec(bad)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func reweightArgs(dir, in string) []string {
	return []string{"reweight", filepath.Join(dir, in), "-o", filepath.Join(dir, "out.arrow"),
		"--summary", filepath.Join(dir, "summary.csv"), "--state", filepath.Join(dir, "state.json"),
		"--device", "cpu", "--quiet", "--phase-mode", "target", "--target-entropy", "7", "--weight-fn", "tanh"}
}

// uninterrupted is the outcome of one run of the good input on a fresh directory.
func uninterrupted(t *testing.T) outcome {
	t.Helper()
	dir := txnDir(t)
	if code, _, stderr := child(t, "", "", reweightArgs(dir, "in.arrow")...); code != 0 {
		t.Fatalf("uninterrupted run: exit %d: %s", code, stderr)
	}
	o := look(t, dir)
	if o.out == nil || o.summary == nil || o.state == nil || len(o.others) != 0 {
		t.Fatalf("uninterrupted run left %v", o)
	}
	return o
}

// A run that fails, is cancelled or is killed leaves the directory as it was (or, killed after
// its commit, complete); running the same command again gives exactly the outcome of one
// uninterrupted run.
func TestReweightIsATransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("runs papo in child processes")
	}
	want := uninterrupted(t)
	none := outcome{}
	tests := []struct {
		name  string
		prior bool   // the directory holds a completed run's outcome first
		in    string // input of the interrupted run
		at    string // point:n
		sig   string
		code  int    // exit status, unless killed
		msg   string // on stderr
		after string // "before": the outcome before the run; "complete": the uninterrupted outcome
	}{
		{"data error in step 4", false, "bad.arrow", "", "", 1, "bad.arrow: batch 5, row 10 (row 170 of the input): logits", "before"},
		{"data error in step 4 over a completed run", true, "bad.arrow", "", "", 1, "logits", "before"},
		{"Ctrl-C after batch 1", false, "in.arrow", "batch:1", "INT", 1, "interrupted: no output was written and the run state", "before"},
		{"Ctrl-C after batch 6", true, "in.arrow", "batch:6", "INT", 1, "interrupted", "before"},
		{"Ctrl-C after the last batch", false, "in.arrow", "batch:10", "INT", 1, "interrupted", "before"},
		{"Ctrl-C with the outputs finished, over a completed run", true, "in.arrow", "finished:1", "INT", 1, "interrupted", "before"},
		{"SIGKILL after batch 1", false, "in.arrow", "batch:1", "KILL", 0, "", "before"},
		{"SIGKILL after batch 5", true, "in.arrow", "batch:5", "KILL", 0, "", "before"},
		{"SIGKILL after the last step's reweighting", false, "in.arrow", "closed:1", "KILL", 0, "", "before"},
		{"SIGKILL with the outputs finished, before the commit", false, "in.arrow", "finished:1", "KILL", 0, "", "before"},
		{"SIGKILL with the outputs finished over a completed run", true, "in.arrow", "finished:1", "KILL", 0, "", "before"},
		{"SIGKILL after the commit", false, "in.arrow", "committed:1", "KILL", 0, "", "complete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := txnDir(t)
			if tc.prior {
				if code, _, stderr := child(t, "", "", reweightArgs(dir, "in.arrow")...); code != 0 {
					t.Fatalf("prior run: %s", stderr)
				}
			}
			before := look(t, dir)
			code, killed, stderr := child(t, tc.at, tc.sig, reweightArgs(dir, tc.in)...)
			switch {
			case tc.sig == "KILL" && !killed:
				t.Fatalf("the run was not killed at %s: exit %d: %s", tc.at, code, stderr)
			case tc.sig != "KILL" && (code != tc.code || !strings.Contains(stderr, tc.msg)):
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.msg)
			}
			got := look(t, dir)
			// A killed run may leave the temporary files it was writing (nothing else): the next
			// run removes them.
			if killed {
				var kept []string
				for _, n := range got.others {
					if !strings.Contains(n, ".tmp-") {
						kept = append(kept, n)
					}
				}
				got.others = kept
			}
			switch tc.after {
			case "before":
				if !got.equal(before) {
					t.Fatalf("the interrupted run changed the directory: %v, was %v", got, before)
				}
				if !tc.prior && !got.equal(none) {
					t.Fatalf("the interrupted run left %v", got)
				}
			case "complete":
				if !got.equal(want) {
					t.Fatalf("a run killed after its commit left %v, want the complete %v", got, want)
				}
			}
			// The same command again: exactly one uninterrupted run's outcome.
			code, _, stderr = child(t, "", "", reweightArgs(dir, "in.arrow")...)
			if code != 0 {
				t.Fatalf("rerun: exit %d: %s", code, stderr)
			}
			if got := look(t, dir); !got.equal(want) {
				t.Errorf("rerun gave %v, want the uninterrupted %v", got, want)
			}
			if (tc.prior || tc.after == "complete") && !strings.Contains(stderr, "step 0 comes again") {
				t.Errorf("the rerun over a committed run did not say it rolled back: %s", stderr)
			}
		})
	}
}
