package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/entropy-polarity/papo/polarity"
)

// The GPU build links gorgonia.org/cu, which initialises CUDA before main and exits on a
// host without a GPU (docs/DESIGN.md). So the default binary is pure Go, and "--device auto"
// asks a separate papo-cuda binary, in a child process that may die harmlessly, whether a
// device is usable; if so the whole command is re-executed as papo-cuda.

const (
	cudaBinary   = "papo-cuda"
	delegatedEnv = "PAPO_DELEGATED" // set in papo-cuda's environment when papo handed over to it
	probeTimeout = 20 * time.Second
)

// selectEngine returns the engine for --device. It may not return at all: when papo hands
// the command over to papo-cuda, the process image is replaced.
func selectEngine(env *environment, device string, threads int, args []string) (polarity.Engine, error) {
	if _, err := polarity.BestKernel(); err != nil {
		return nil, err
	}
	cpu := func() polarity.Engine { return polarity.NewCPU(threads) }
	switch device {
	case "cpu":
		return cpu(), nil
	case "auto", "cuda":
	default:
		return nil, usagef("--device %q: want auto, cpu or cuda", device)
	}
	if cudaBuiltIn {
		e, err := newCUDAEngine(0, cpu(), env.stderr)
		if err == nil {
			return e, nil
		}
		if device == "cuda" {
			return nil, fmt.Errorf("--device cuda: %w", err)
		}
		fmt.Fprintf(env.stderr, "papo: using the CPU engine: CUDA engine unavailable: %v\n", err)
		return cpu(), nil
	}
	reason := delegate(env, args)
	if device == "cuda" {
		return nil, fmt.Errorf("--device cuda: %s", reason)
	}
	fmt.Fprintf(env.stderr, "papo: using the CPU engine: %s\n", reason)
	return cpu(), nil
}

// delegate re-executes the command as papo-cuda when a probe finds a usable device. It
// returns only when it did not hand over, with the reason.
func delegate(env *environment, args []string) string {
	if os.Getenv(delegatedEnv) != "" {
		return "this binary was built without CUDA and was itself started by papo"
	}
	bin, err := findCUDABinary()
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var out bytes.Buffer
	probe := exec.CommandContext(ctx, bin, "probe")
	probe.Stdout, probe.Stderr = &out, &out
	probe.Env = append(os.Environ(), delegatedEnv+"=probe")
	if err := probe.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = err.Error()
		}
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Sprintf("%s probe failed: %s", bin, msg)
	}
	return execAs(bin, args, delegatedEnv+"=1").Error()
}

// cudaEnv names the papo-cuda binary to hand over to, instead of the one next to papo.
const cudaEnv = "PAPO_CUDA"

// findCUDABinary is the papo-cuda that --device auto may hand over to: $PAPO_CUDA, else the
// papo-cuda next to this executable.
func findCUDABinary() (string, error) {
	return findSibling(cudaBinary, cudaEnv, "build it with `make cuda` on a CUDA host")
}

// findSibling is the program name that papo hands a command over to: the absolute path in the
// environment variable pinned, else name next to this executable (symbolic links resolved).
// Never one found on PATH: a directory early on PATH (a project's bin/, a writable one) would
// otherwise run as the user's papo with its token. hint says how to build it.
func findSibling(name, pinned, hint string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		self = ""
	} else if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	return siblingFor(self, name, pinned, os.Getenv(pinned), hint)
}

// siblingFor is findSibling for the executable self and the value of the variable pinned.
func siblingFor(self, name, pinned, value, hint string) (string, error) {
	executable := func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
	}
	if value != "" {
		if !filepath.IsAbs(value) || !executable(value) {
			return "", fmt.Errorf("%s=%q: want the absolute path of an executable %s", pinned, value, name)
		}
		return value, nil
	}
	if self != "" {
		if cand := filepath.Join(filepath.Dir(self), name); executable(cand) {
			return cand, nil
		}
	}
	return "", fmt.Errorf("no %s next to papo (%s) and no %s (%s; PATH is not searched)",
		name, filepath.Dir(self), pinned, hint)
}

// runProbe lists the usable CUDA devices: exit 0 when there is one.
func runProbe(env *environment, args []string) error {
	fs := flagSet("probe", "")
	if _, err := parseFlags(fs, args, env.stderr); err != nil {
		return err
	}
	if !cudaBuiltIn && os.Getenv(delegatedEnv) == "" {
		// The plain binary answers for the pair: it asks papo-cuda if there is one.
		bin, err := findCUDABinary()
		if err != nil {
			return fmt.Errorf("no usable CUDA device: %w", err)
		}
		cmd := exec.Command(bin, "probe")
		cmd.Stdout, cmd.Stderr = env.stdout, env.stderr
		cmd.Env = append(os.Environ(), delegatedEnv+"=probe")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("no usable CUDA device: %s probe: %w", bin, err)
		}
		return nil
	}
	return probeDevices(env.stdout)
}

// engineLabel names an engine for people: the CPU engine with its kernel ("cpu (avx2+fma)").
func engineLabel(e polarity.Engine) string {
	if k, ok := e.(interface{ Kernel() polarity.Kernel }); ok {
		return fmt.Sprintf("%s (%v)", e.Name(), k.Kernel())
	}
	return e.Name()
}
