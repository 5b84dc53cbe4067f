//go:build unix

package papo

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/entropy-polarity/papo/internal/atomicfile"
	"github.com/entropy-polarity/papo/internal/testchild"
)

// The kill tests run this test binary again as a child process (TestMain dispatches on
// childEnv) that processes steps [0, killSteps) of runStep with a state file in its directory,
// committing each step's output (out-NNNN.bin) and the state together (WithDeferredSave and
// Commit), as papo's run pipeline does. The parent kills it with SIGKILL and starts it again
// until it finishes; after every kill the outputs on disk must be exactly those of the steps the
// state has, and at the end every output and the final state must equal an uninterrupted
// in-process run's, byte for byte.
const (
	childEnv  = "PAPO_TEST_KILL_CHILD_DIR"
	killSteps = 150
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
// step.
func child(dir string) error {
	r, err := NewReweighter(runConfig(), WithStateFile(filepath.Join(dir, "state.json")), WithDeferredSave())
	if err != nil {
		return err
	}
	defer r.Close()
	start := int64(0)
	if last, ok := r.LastStep(); ok {
		start = last + 1
	}
	for k := start; k < killSteps; k++ {
		tok := runStep(k)
		w := make([]float32, tok.Len())
		at := make([]float64, tok.Len())
		res, err := r.Step(tok, w, at)
		if err != nil {
			return err
		}
		f, err := atomicfile.Create(outPath(dir, k))
		if err != nil {
			return err
		}
		if _, err := f.Write(encodeOutput(res, w, at)); err != nil {
			return err
		}
		if err := r.Commit(f); err != nil {
			return err
		}
	}
	return nil
}

// startChild starts the child on dir; the returned channel yields its exit error.
func startChild(t *testing.T, dir string, env ...string) (*exec.Cmd, *bytes.Buffer, chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(testchild.Env(childEnv+"="+dir), env...)
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

// committedSteps opens the run as the next process would (which finishes an interrupted
// commit) and checks that the outputs on disk are exactly those of the steps the state has. It
// returns the last step (−1 before the first).
func committedSteps(t *testing.T, dir string) int64 {
	t.Helper()
	r, err := NewReweighter(runConfig(), WithStateFile(filepath.Join(dir, "state.json")))
	if err != nil {
		t.Fatalf("opening the state after a kill: %v", err)
	}
	defer r.Close()
	last, ok := r.LastStep()
	if !ok {
		last = -1
	}
	for k := int64(0); k < killSteps; k++ {
		_, err := os.Stat(outPath(dir, k))
		switch exists := err == nil; {
		case k <= last && !exists:
			t.Fatalf("the state has step %d (last %d) but its output is missing: the state ran ahead of the output", k, last)
		case k > last && exists:
			t.Fatalf("step %d has an output but the state ends at %d: the output ran ahead of the state", k, last)
		}
	}
	return last
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
	// A killed child leaves the temporary file of the output it was writing (the run pipeline,
	// which knows its outputs, removes those); the state's own are removed when it is opened.
	if m, _ := filepath.Glob(filepath.Join(dir, ".state.json*.tmp-*")); len(m) != 0 {
		t.Errorf("stale temporary files: %v", m)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json.commit")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a commit journal is left: %v", err)
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
	// A child on a finished run only starts, opens the state and exits: that part of every
	// restart is fixed, and under -race or on a loaded machine it can be most of a run.
	t0 = time.Now()
	_, stderr, done = startChild(t, clean)
	if err := <-done; err != nil {
		t.Fatalf("child on a finished run: %v\n%s", err, stderr)
	}
	startup := min(time.Since(t0), full)

	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(2026, 11))
	const maxRuns = 200
	midRun, finished := 0, false
	for run := 0; run < maxRuns && !finished; run++ {
		before := committedSteps(t, dir)
		cmd, stderr, done := startChild(t, dir)
		// Even restarts die while starting or recovering, odd ones within a quarter of the steps.
		delay := time.Duration(rng.Int64N(int64(startup + 1)))
		if run%2 == 1 {
			delay = startup + time.Duration(rng.Int64N(int64((full-startup)/4+1)))
		}
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
			after := committedSteps(t, dir)
			if after < before {
				t.Fatalf("run %d: the committed last step went back from %d to %d", run, before, after)
			}
			if after > before && after < killSteps-1 {
				midRun++
			}
		}
	}
	if !finished {
		t.Fatalf("the run did not finish in %d restarts", maxRuns)
	}
	t.Logf("uninterrupted child %v (start-up %v); %d kills landed after some steps and before the end", full, startup, midRun)
	// Half the kill delays are uniform over a quarter of the steps after start-up, so those restarts progress and then
	// die mid-run (about 8 on an idle machine); fewer than 3 such kills means the test did not
	// test restarts.
	if midRun < 3 {
		t.Errorf("only %d kills interrupted a run in progress", midRun)
	}
	checkOutputs(t, dir, want, wantState)
}
