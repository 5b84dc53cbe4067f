//go:build !papofront

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchPeers runs `papo bench --peers` small: every part of its table must be there, papo
// analyze must really run as a child process (this test binary, as papo), and the run's rows
// must be appended to the record.
func TestBenchPeers(t *testing.T) {
	t.Setenv(cliChildEnv, "1") // the end-to-end runs re-execute this binary as papo
	record := filepath.Join(t.TempDir(), "RESULTS.md")
	if err := os.WriteFile(record, []byte("# Benchmark results\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "bench", "--peers", "--vocab", "2048", "--tokens", "4", "--e2e-tokens", "8", "--reps", "1",
		"--bandwidth-mib", "8", "--dtype", "float32,bfloat16", "--threads", "2", "--record", record)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	count := func(prefix string) int {
		n := 0
		for _, l := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(l, prefix) {
				n++
			}
		}
		return n
	}
	want := map[string]int{
		"| memory | read (":                   2,
		"| papo engine | cpu (":               8, // 2 vocabularies × 2 dtypes × 2 thread counts
		"| papo analyze | analyze IPC file |": 4, // 2 dtypes × 2 thread counts
	}
	if _, err := exec.LookPath("cc"); err == nil {
		want["| roofline | C avx2+fma | float32 | 2048 |"] = 2
	}
	if os.Getenv("PAPO_REQUIRE_TORCH") == "1" {
		want["| peer | NumPy | float32 | 2048 | 1 |"] = 1
		want["| peer | torch verl-style | float32 | 2048 |"] = 2
		want["| peer | torch TRL-style | float32 | 2048 |"] = 2
		want["| memory | torch.sum |"] = 2
	}
	for prefix, n := range want {
		if got := count(prefix); got != n {
			t.Errorf("%d rows starting %q, want %d", got, prefix, n)
		}
	}
	if !strings.Contains(stdout, "| 128256 |") {
		t.Errorf("no engine rows at V = 128,256:\n%s", stdout)
	}
	// Both sides of a percentage are the better of two windows: the C roofline's and papo
	// analyze's (each window's rows are merged by Report.KeepFaster, so the counts above hold).
	for _, w := range []string{"window 1 of 2", "window 2 of 2"} {
		if !strings.Contains(stderr, "end to end: timing papo analyze, "+w) {
			t.Errorf("stderr lacks the end-to-end %s:\n%s", w, stderr)
		}
	}
	data, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(data), "| "+cpuModel()+" | "); got != 2 {
		t.Errorf("record has %d rows of this run, want 2 (1 and 2 threads):\n%s", got, data)
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

func TestBenchPeersWithoutPeers(t *testing.T) {
	t.Setenv(cliChildEnv, "1")
	t.Setenv("CC", "/nonexistent/cc")
	t.Setenv("PATH", filepath.Dir(os.Args[0])) // no cc, gcc or python3
	code, stdout, stderr := runCLI(t, "bench", "--peers", "--vocab", "1024", "--tokens", "2", "--e2e-tokens", "2", "--reps", "1",
		"--bandwidth-mib", "8", "--dtype", "float32", "--threads", "1", "--python", "/nonexistent/python3", "--record", filepath.Join(t.TempDir(), "none.md"))
	if code == 0 {
		t.Fatalf("a --record file that does not exist was accepted\n%s", stderr)
	}
	for _, want := range []string{"skipped the C roofline: no C compiler", "skipped the peers (PyTorch, NumPy): no Python with NumPy", "--record"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(stdout, "| papo analyze | analyze IPC file | float32 | 1024 | 1 |") {
		t.Errorf("no end-to-end row:\n%s", stdout)
	}
	code, _, stderr = runCLI(t, "bench", "--peers", "--row-stats")
	if code != 2 || !strings.Contains(stderr, "two benchmarks") {
		t.Errorf("--peers --row-stats: exit %d, %s", code, stderr)
	}
}
