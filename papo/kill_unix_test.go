//go:build unix

package papo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	papoio "github.com/entropy-polarity/papo/io"
)

// The kill tests run this test binary again as a child process (TestMain dispatches on
// childEnv) that processes steps [0, killSteps) of runStep with a state file in its directory,
// writing each step's output to out-NNNN.bin. The parent kills it with SIGKILL and starts it
// again until it finishes, then compares every output and the final state with an
// uninterrupted in-process run, byte for byte.
const (
	childEnv      = "PAPO_TEST_KILL_CHILD_DIR"
	childCrashEnv = "PAPO_TEST_KILL_CHILD_CRASH_AT" // SIGKILL itself between write and rename of this step
	killSteps     = 150
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := child(dir); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func outPath(dir string, k int64) string { return filepath.Join(dir, fmt.Sprintf("out-%04d.bin", k)) }

// child is a restartable run, as a trainer would drive papo: it resumes after the state's last
// step, or replays the last step when the crash came after the state was saved but before
// that step's output was.
func child(dir string) error {
	crashAt := int64(-1)
	if s := os.Getenv(childCrashEnv); s != "" {
		var err error
		if crashAt, err = strconv.ParseInt(s, 10, 64); err != nil {
			return err
		}
	}
	r, err := NewReweighter(runConfig(), filepath.Join(dir, "state.json"), false)
	if err != nil {
		return err
	}
	start := int64(0)
	if last, ok := r.LastStep(); ok {
		start = last + 1
		if _, err := os.Stat(outPath(dir, last)); errors.Is(err, os.ErrNotExist) {
			start = last
		}
	}
	for k := start; k < killSteps; k++ {
		if k == crashAt {
			testHookBeforeRename = func(string) error {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // the signal is on its way
			}
		}
		tok := runStep(k)
		w := make([]float32, tok.Len())
		at := make([]float64, tok.Len())
		res, err := r.Step(tok, w, at)
		if err != nil {
			return err
		}
		if err := papoio.WriteFileAtomic(outPath(dir, k), encodeOutput(res, w, at)); err != nil {
			return err
		}
	}
	return nil
}

// startChild starts the child on dir; the returned channel yields its exit error.
func startChild(t *testing.T, dir string, env ...string) (*exec.Cmd, *bytes.Buffer, chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+dir), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, &stderr, done
}

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// savedLastStep reads the state file's last step (−1 when there is none yet).
func savedLastStep(t *testing.T, dir string) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil || sf.Detector == nil {
		t.Fatalf("state file after a kill is not a valid state (%v):\n%s", err, data)
	}
	return sf.Detector.LastStep
}

// checkOutputs compares the child's outputs and final state with the uninterrupted run.
func checkOutputs(t *testing.T, dir string, want [][]byte, wantState []byte) {
	t.Helper()
	for k := range want {
		got, err := os.ReadFile(outPath(dir, int64(k)))
		if err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
		if !bytes.Equal(got, want[k]) {
			t.Fatalf("step %d: output differs from the uninterrupted run", k)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "state.json")); !bytes.Equal(got, wantState) {
		t.Errorf("final state differs from the uninterrupted run:\n%s\nwant\n%s", got, wantState)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".state.json.tmp-*")); len(m) != 0 {
		t.Errorf("stale temporary state files: %v", m)
	}
}

func TestKillAtRandomPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	want, wantState := reference(t, runConfig(), killSteps)

	// An uninterrupted child first: it must match the in-process run, and its duration sets the
	// range of the kill delays.
	clean := t.TempDir()
	t0 := time.Now()
	_, stderr, done := startChild(t, clean)
	if err := <-done; err != nil {
		t.Fatalf("uninterrupted child: %v\n%s", err, stderr)
	}
	full := time.Since(t0)
	checkOutputs(t, clean, want, wantState)

	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(2026, 11))
	const maxRuns = 200
	midRun, replays, finished := 0, 0, false
	for run := 0; run < maxRuns && !finished; run++ {
		before := savedLastStep(t, dir)
		cmd, stderr, done := startChild(t, dir)
		delay := time.Duration(rng.Int64N(int64(full / 4)))
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: child failed: %v\n%s", run, err, stderr)
			}
			finished = true
		case <-time.After(delay):
			cmd.Process.Signal(syscall.SIGKILL)
			err := <-done
			if err == nil {
				finished = true // it finished just before the signal
				break
			}
			if !killedBySIGKILL(err) {
				t.Fatalf("run %d: child failed: %v\n%s", run, err, stderr)
			}
			after := savedLastStep(t, dir)
			if after < before {
				t.Fatalf("run %d: the saved last step went back from %d to %d", run, before, after)
			}
			if after > before && after < killSteps-1 {
				midRun++
			}
			if _, err := os.Stat(outPath(dir, after)); after >= 0 && errors.Is(err, os.ErrNotExist) {
				replays++ // killed after the state's save and before the output's: the next run replays
			}
		}
	}
	if !finished {
		t.Fatalf("the run did not finish in %d restarts", maxRuns)
	}
	t.Logf("uninterrupted child %v; %d kills landed after some steps and before the end, %d between a step's state and its output",
		full, midRun, replays)
	// Kill delays are uniform over a quarter of a whole run, so most restarts progress and then
	// die mid-run (about 8 on an idle machine); fewer than 3 such kills means the test did not
	// test restarts.
	if midRun < 3 {
		t.Errorf("only %d kills interrupted a run in progress", midRun)
	}
	checkOutputs(t, dir, want, wantState)
}

func TestCrashBetweenWriteAndRename(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	const crashAt = 17
	want, wantState := reference(t, runConfig(), killSteps)
	dir := t.TempDir()
	_, stderr, done := startChild(t, dir, childCrashEnv+"="+strconv.Itoa(crashAt))
	if err := <-done; !killedBySIGKILL(err) {
		t.Fatalf("child was to kill itself at step %d: %v\n%s", crashAt, err, stderr)
	}
	if last := savedLastStep(t, dir); last != crashAt-1 {
		t.Fatalf("after a crash before the rename of step %d the state's last step is %d, want %d", crashAt, last, crashAt-1)
	}
	// The new state was written in full beside the old one, but never renamed into place.
	tmps, _ := filepath.Glob(filepath.Join(dir, ".state.json.tmp-*"))
	if len(tmps) != 1 {
		t.Fatalf("temporary state files after the crash: %v, want exactly one", tmps)
	}
	data, err := os.ReadFile(tmps[0])
	if err != nil {
		t.Fatal(err)
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil || sf.Detector == nil || sf.Detector.LastStep != crashAt {
		t.Fatalf("temporary file is not the full state of step %d (%v):\n%s", crashAt, err, data)
	}
	if _, err := os.Stat(outPath(dir, crashAt)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("step %d has an output although its state was never committed", crashAt)
	}

	_, stderr, done = startChild(t, dir)
	if err := <-done; err != nil {
		t.Fatalf("restart: %v\n%s", err, stderr)
	}
	checkOutputs(t, dir, want, wantState)
}
