package atomicfile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/entropy-polarity/papo/internal/testchild"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// names lists a directory's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestFileAppearsOnlyOnCommit(t *testing.T) {
	tests := []struct {
		name   string
		commit bool
		want   string
	}{
		{"commit replaces the old file", true, "new"},
		{"abort keeps the old file", false, "old"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.arrow")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("new"); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, path); got != "old" {
				t.Fatalf("before commit the destination holds %q, want the old content", got)
			}
			if tc.commit {
				err = f.Commit()
			} else {
				err = f.Abort()
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Abort(); err != nil { // after Commit or Abort: nothing
				t.Fatal(err)
			}
			if got := readFile(t, path); got != tc.want {
				t.Errorf("destination holds %q, want %q", got, tc.want)
			}
			if got := names(t, dir); !slices.Equal(got, []string{"out.arrow"}) {
				t.Errorf("directory holds %v, want only out.arrow", got)
			}
			if fi, _ := os.Stat(path); tc.commit && fi.Mode().Perm()&0o600 != 0o600 { // the umask decides the rest (TestCreateRespectsUmask)
				t.Errorf("committed file has mode %v, want the owner to read and write it", fi.Mode().Perm())
			}
		})
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s[1].json") // glob metacharacters in the name stay literal
	keep := []string{"s[1].json", ".s[1].json.commit", ".other.tmp-1", "s.json"}
	stale := []string{".s[1].json.tmp-123", ".s[1].json.tmp-x"}
	for _, n := range append(slices.Clone(keep), stale...) {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveStale(path); err != nil {
		t.Fatal(err)
	}
	got := names(t, dir)
	slices.Sort(keep)
	if !slices.Equal(got, keep) {
		t.Errorf("after RemoveStale: %v, want %v", got, keep)
	}
}

// group writes three destinations with old content and three uncommitted files with new
// content, named out-0 … out-2 in dir.
func group(t testing.TB, dir string) []*File {
	var files []*File
	for i := range 3 {
		path := filepath.Join(dir, fmt.Sprintf("out-%d", i))
		if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(f, "new-%d", i); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

func contents(t *testing.T, dir string) []string {
	var out []string
	for i := range 3 {
		out = append(out, readFile(t, filepath.Join(dir, fmt.Sprintf("out-%d", i))))
	}
	return out
}

var allNew = []string{"new-0", "new-1", "new-2"}

func TestCommitAll(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "state.commit")
	if err := CommitAll(journal, group(t, dir)...); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, dir); !slices.Equal(got, allNew) {
		t.Errorf("after CommitAll: %v, want %v", got, allNew)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"out-0", "out-1", "out-2"}) {
		t.Errorf("directory holds %v: want the three files, no journal, no temporary file", got)
	}
	if ok, err := Recover(journal); ok || err != nil {
		t.Errorf("Recover without a journal: %v, %v; want false, nil", ok, err)
	}
}

// A file that cannot be committed (its destination is a directory) is found before the commit
// point: nothing changes and every temporary file is removed.
func TestCommitAllFailsBeforeCommitPoint(t *testing.T) {
	dir := t.TempDir()
	files := group(t, dir)
	blocked := filepath.Join(dir, "blocked")
	if err := os.Mkdir(blocked, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := Create(blocked)
	if err != nil {
		t.Fatal(err)
	}
	err = CommitAll(filepath.Join(dir, "state.commit"), append(files, f)...)
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("CommitAll onto a directory: %v, want an error saying so", err)
	}
	if got := contents(t, dir); !slices.Equal(got, []string{"old", "old", "old"}) {
		t.Errorf("after a failed CommitAll: %v, want the old contents", got)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"blocked", "out-0", "out-1", "out-2"}) {
		t.Errorf("directory holds %v: want no journal and no temporary file", got)
	}
}

func TestRecoverRefusesMalformedJournal(t *testing.T) {
	tests := []struct{ name, journal string }{
		{"not JSON", "{"},
		{"other format", `{"format": "x", "version": 1, "files": []}`},
		{"relative paths", `{"format": "papo-commit-journal", "version": 1, "files": [{"temp": ".a.tmp-1", "path": "a"}]}`},
		{"trailing data", `{"format": "papo-commit-journal", "version": 1, "files": []} {}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.commit")
			if err := os.WriteFile(path, []byte(tc.journal), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Recover(path); err == nil || !strings.Contains(err.Error(), "malformed") {
				t.Errorf("Recover: %v, want a malformed-journal error", err)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("the malformed journal was removed: %v", err)
			}
		})
	}
}

// The crash tests run this test binary again as a child (TestMain dispatches on crashDirEnv)
// that commits a group and kills itself with SIGKILL before rename crashAtEnv (or after the
// last one, at 3).
const (
	crashDirEnv = "PAPO_ATOMICFILE_CRASH_DIR"
	crashAtEnv  = "PAPO_ATOMICFILE_CRASH_AT"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		at, _ := strconv.Atoi(os.Getenv(crashAtEnv))
		err := commitAll(filepath.Join(dir, "state.commit"), group(&testing.T{}, dir), func(i int) {
			if i == at {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		})
		fmt.Fprintln(os.Stderr, "child was not killed:", err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func TestCrashDuringCommitAll(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for at := 0; at <= 3; at++ {
		t.Run(fmt.Sprintf("killed before rename %d", at), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = testchild.Env(crashDirEnv+"="+dir, crashAtEnv+"="+strconv.Itoa(at))
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v, want death by SIGKILL\n%s", err, out)
			}
			// The first `at` files are renamed, the others not yet: a reader that ran Recover
			// first never sees this.
			want := append(slices.Clone(allNew[:at]), []string{"old", "old", "old"}[at:]...)
			if got := contents(t, dir); !slices.Equal(got, want) {
				t.Fatalf("after the kill: %v, want %v", got, want)
			}
			ok, err := Recover(filepath.Join(dir, "state.commit"))
			if !ok || err != nil {
				t.Fatalf("Recover: %v, %v; want true, nil", ok, err)
			}
			if got := contents(t, dir); !slices.Equal(got, allNew) {
				t.Errorf("after Recover: %v, want %v", got, allNew)
			}
			if got := names(t, dir); !slices.Equal(got, []string{"out-0", "out-1", "out-2"}) {
				t.Errorf("after Recover the directory holds %v: want no journal and no temporary file", got)
			}
		})
	}
}
