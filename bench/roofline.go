package bench

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// rooflineC is bench/roofline/roofline.c: the C kernels of the engine's four sums, carried in
// the binary so that `papo bench --peers` can build them wherever a C compiler is installed.
//
//go:embed roofline/roofline.c
var rooflineC []byte

// ErrNoCompiler is returned by RunRoofline when no C compiler is found.
var ErrNoCompiler = errors.New("no C compiler (set CC, or install gcc)")

// RooflineISA is the C kernel's speed for one instruction set.
type RooflineISA struct {
	ISA       string // "avx2+fma", "avx512f"
	Supported bool   // false: the CPU lacks it (nothing was timed)
	// OneThread and AllThreads are tokens/s on 1 thread and on Threads threads.
	OneThread, AllThreads float64
	Threads               int
	// WorstRelErrH is the kernel's worst relative error of H against a double pass.
	WorstRelErrH float64
}

// Roofline is one run of the C roofline.
type Roofline struct {
	Compiler string
	V, Rows  int
	ISAs     []RooflineISA
}

// Best is the supported ISA with the most tokens/s on all threads, or false if none is.
func (r *Roofline) Best() (RooflineISA, bool) {
	var best RooflineISA
	ok := false
	for _, isa := range r.ISAs {
		if isa.Supported && (!ok || isa.AllThreads > best.AllThreads) {
			best, ok = isa, true
		}
	}
	return best, ok
}

// findCC is $CC, else cc, else gcc, from PATH.
func findCC() (string, error) {
	for _, c := range []string{os.Getenv("CC"), "cc", "gcc"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", ErrNoCompiler
}

// RunRoofline compiles the C roofline with -O3 in a temporary directory and times it on V × rows
// float32 logits, best of reps, on 1 thread and on threads threads. V must be a multiple of 32.
func RunRoofline(ctx context.Context, v, rows, reps, threads int) (*Roofline, error) {
	if v < 32 || v%32 != 0 || rows < 1 || reps < 1 || threads < 1 {
		return nil, fmt.Errorf("roofline: V = %d, rows = %d, reps = %d, threads = %d: want V a positive multiple of 32 and the rest ≥ 1", v, rows, reps, threads)
	}
	cc, err := findCC()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "papo-roofline-")
	if err != nil {
		return nil, fmt.Errorf("roofline: %w", err)
	}
	defer os.RemoveAll(dir)
	src, bin := filepath.Join(dir, "roofline.c"), filepath.Join(dir, "roofline")
	if err := os.WriteFile(src, rooflineC, 0o600); err != nil {
		return nil, fmt.Errorf("roofline: %w", err)
	}
	if out, err := exec.CommandContext(ctx, cc, "-O3", "-Wall", "-o", bin, src, "-lm", "-lpthread").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("roofline: %s -O3 roofline.c: %w\n%s", cc, err, bytes.TrimSpace(out))
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, strconv.Itoa(v), strconv.Itoa(rows), strconv.Itoa(reps), strconv.Itoa(threads))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("roofline: %w\n%s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	r, err := parseRoofline(stdout.String())
	if err != nil {
		return nil, err
	}
	r.Compiler, r.V, r.Rows = cc, v, rows
	return r, nil
}

var (
	rooflineTimed       = regexp.MustCompile(`^(\S+)\s+1 thread\s+([0-9.]+) tokens/s\s+(\d+) threads\s+([0-9.]+) tokens/s\s+worst relative error of H ([0-9.eE+-]+)`)
	rooflineUnsupported = regexp.MustCompile(`^(\S+)\s+not supported by this CPU`)
)

// parseRoofline reads the lines roofline.c prints, one per ISA.
func parseRoofline(out string) (*Roofline, error) {
	r := &Roofline{}
	for _, line := range strings.Split(out, "\n") {
		if m := rooflineUnsupported.FindStringSubmatch(line); m != nil {
			r.ISAs = append(r.ISAs, RooflineISA{ISA: m[1]})
			continue
		}
		m := rooflineTimed.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		isa := RooflineISA{ISA: m[1], Supported: true}
		var errs [4]error
		isa.OneThread, errs[0] = strconv.ParseFloat(m[2], 64)
		isa.Threads, errs[1] = strconv.Atoi(m[3])
		isa.AllThreads, errs[2] = strconv.ParseFloat(m[4], 64)
		isa.WorstRelErrH, errs[3] = strconv.ParseFloat(m[5], 64)
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("roofline: line %q: %w", line, err)
		}
		r.ISAs = append(r.ISAs, isa)
	}
	if len(r.ISAs) == 0 {
		return nil, fmt.Errorf("roofline: no result in its output:\n%s", out)
	}
	return r, nil
}
