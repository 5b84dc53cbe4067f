package bench

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/entropy-polarity/papo/polarity"
)

// peersPy times what RL trainers run on CPU today (verl's and TRL's entropy and log-prob in
// PyTorch, and NumPy) on the logits papo timed; see its docstring.
//
//go:embed peers.py
var peersPy []byte

// The largest |ΔH| and |Δ log p| (nats) allowed between a peer and papo on the same logits, for
// the race to count as fair: the peers work in float32, and verl's logsumexp(z) − Σ softmax(z)·z
// cancels two terms near max z, so it is off the float64 value by up to 1.4e-3 at V = 151,936
// (measured on 64 rows like the benchmark's; TRL's form by 1.2e-4). A different formula is off
// by 0.01 or more.
const (
	PeerToleranceH       = 5e-3
	PeerToleranceLogprob = 1e-3
)

// Peer is one peer's speed on a Workload, and how far its outputs are from papo's.
type Peer struct {
	Name    string
	Version string
	Threads int
	// Skipped says why the peer did not run ("" if it ran).
	Skipped      string
	Seconds      float64
	TokensPerSec float64
	BytesPerSec  float64
	// Checked says the peer returned entropy and log-prob for every token; MaxDiffH and
	// MaxDiffLogprob are then the largest differences from papo's.
	Checked                  bool
	MaxDiffH, MaxDiffLogprob float64
}

// Agrees reports whether a checked peer is within PeerToleranceH and PeerToleranceLogprob of
// papo.
func (p *Peer) Agrees() bool {
	return p.Checked && p.MaxDiffH <= PeerToleranceH && p.MaxDiffLogprob <= PeerToleranceLogprob
}

// FindPython is the first of candidates that imports numpy and torch, else the first that
// imports numpy ("" and an error naming what each lacked if none does).
func FindPython(ctx context.Context, candidates ...string) (string, error) {
	var tried []string
	for _, imports := range []string{"import numpy, torch", "import numpy"} {
		for _, c := range candidates {
			if c == "" {
				continue
			}
			p, err := exec.LookPath(c)
			if err != nil {
				tried = append(tried, c+": not found")
				continue
			}
			if out, err := exec.CommandContext(ctx, p, "-c", imports).CombinedOutput(); err != nil {
				tried = append(tried, fmt.Sprintf("%s: %s", p, lastLine(out, err)))
				continue
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("no Python with NumPy (%s)", strings.Join(tried, "; "))
}

func lastLine(out []byte, err error) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if l := lines[len(lines)-1]; l != "" {
		return l
	}
	return err.Error()
}

// RunPeers times the peers with python on w's logits (float32 only), best of reps, with each of
// threads for the peers that thread, and checks their outputs against ours, papo's result on
// the same workload.
func RunPeers(ctx context.Context, python string, w *Workload, ours *polarity.Result, threads []int, reps int) ([]Peer, error) {
	l := &w.Batch.Logits
	if l.Dtype != polarity.Float32 {
		return nil, fmt.Errorf("peers: the workload is %s: the peers run on float32 logits", l.Dtype)
	}
	rows := w.Batch.Rows()
	if len(ours.Entropy) != rows || len(ours.Logprob) != rows {
		return nil, fmt.Errorf("peers: papo's result has %d rows, the workload %d", len(ours.Entropy), rows)
	}
	dir, err := os.MkdirTemp("", "papo-peers-")
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	defer os.RemoveAll(dir)
	ids := make([]int64, rows)
	for i, a := range w.Batch.TokenID {
		ids[i] = int64(a)
	}
	script := filepath.Join(dir, "peers.py")
	if err := errors.Join(writeLittleEndian(filepath.Join(dir, "logits.f32"), l.F32),
		writeLittleEndian(filepath.Join(dir, "ids.i64"), ids)); err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	if err := os.WriteFile(script, peersPy, 0o600); err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	ts := make([]string, len(threads))
	for i, t := range threads {
		ts[i] = strconv.Itoa(t)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, python, script, dir, strconv.Itoa(rows), strconv.Itoa(l.V), strings.Join(ts, ","), strconv.Itoa(reps))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("peers: %s peers.py: %w\n%s", python, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return parsePeers(stdout.Bytes(), ours, w.Bytes())
}

// writeLittleEndian writes xs to path as little-endian values, 1 MiB at a time (binary.Write of
// the whole slice would first copy all of it).
func writeLittleEndian[T float32 | int64](path string, xs []T) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	for len(xs) > 0 && err == nil {
		k := min(len(xs), 1<<17)
		err = binary.Write(bw, binary.LittleEndian, xs[:k])
		xs = xs[k:]
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// peerLine is one line of peers.py's output.
type peerLine struct {
	Peer    string     `json:"peer"`
	Version string     `json:"version"`
	Threads int        `json:"threads"`
	Skipped string     `json:"skipped"`
	Seconds float64    `json:"seconds"`
	Entropy *[]float64 `json:"entropy"`
	Logprob *[]float64 `json:"logprob"`
}

// parsePeers reads peers.py's lines and compares each peer's outputs with ours.
func parsePeers(out []byte, ours *polarity.Result, bytesRead int64) ([]Peer, error) {
	rows := len(ours.Entropy)
	var peers []Peer
	for i, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var pl peerLine
		if err := json.Unmarshal(line, &pl); err != nil {
			return nil, fmt.Errorf("peers: line %d of peers.py's output: %w", i+1, err)
		}
		p := Peer{Name: pl.Peer, Version: pl.Version, Threads: pl.Threads, Skipped: pl.Skipped}
		if p.Name == "" {
			return nil, fmt.Errorf("peers: line %d of peers.py's output names no peer", i+1)
		}
		if p.Skipped == "" {
			if !(pl.Seconds > 0) {
				return nil, fmt.Errorf("peers: %s: time %v s", p.Name, pl.Seconds)
			}
			p.Seconds = pl.Seconds
			p.TokensPerSec = float64(rows) / pl.Seconds
			p.BytesPerSec = float64(bytesRead) / pl.Seconds
		}
		if pl.Entropy != nil || pl.Logprob != nil {
			var err error
			if p.MaxDiffH, err = maxDiff(pl.Entropy, ours.Entropy); err != nil {
				return nil, fmt.Errorf("peers: %s entropy: %w", p.Name, err)
			}
			if p.MaxDiffLogprob, err = maxDiff(pl.Logprob, ours.Logprob); err != nil {
				return nil, fmt.Errorf("peers: %s log-prob: %w", p.Name, err)
			}
			p.Checked = true
		}
		peers = append(peers, p)
	}
	if len(peers) == 0 {
		return nil, errors.New("peers: peers.py printed nothing")
	}
	return peers, nil
}

// maxDiff is max |theirs − ours|, +Inf where either is not finite and they differ.
func maxDiff(theirs *[]float64, ours []float32) (float64, error) {
	if theirs == nil || len(*theirs) != len(ours) {
		n := 0
		if theirs != nil {
			n = len(*theirs)
		}
		return 0, fmt.Errorf("%d values for %d tokens", n, len(ours))
	}
	worst := 0.0
	for i, t := range *theirs {
		o := float64(ours[i])
		if t == o {
			continue
		}
		d := math.Abs(t - o)
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		worst = max(worst, d)
	}
	return worst, nil
}
