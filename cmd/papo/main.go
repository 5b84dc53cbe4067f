// Command papo computes per-token entropy, log-probability and entropy polarity of RL
// rollouts exported as Arrow IPC, and reweights their advantages (PAPO).
//
//	papo gen      synthetic rollouts (no download)
//	papo analyze  per-token entropy and polarity, per-step summary
//	papo reweight PAPO advantage reweighting (and baselines) with restart-safe run state
//	papo report   a self-contained HTML report with figures, from inputs or outputs
//	papo serve    the trainer sidecar: requests as Arrow IPC streams over unix/TCP sockets or stdio
//	papo bench    engine throughput next to the machine's memory bandwidth, the C roofline and peers
//	papo probe    the CUDA devices this binary can use
//
// Exit status: 0 success, 1 data or runtime error, 2 usage error.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
)

const usageText = `papo: entropy polarity of RL rollouts (Arrow IPC in, Arrow/Parquet/CSV/JSONL out)

Usage:
  papo gen      -o OUT [--vocab V] [--tokens N] [--steps S] [--dtype float32|float16|bfloat16] [--seed N]
  papo analyze  IN [-o OUT] [--summary FILE] [--row-stats FILE] [--device auto|cpu|cuda] [--temperature T] [--lr ETA] [--threads N]
  papo reweight IN -o OUT [--state FILE] [--method papo|clip-cov|kl-cov|steer|entropy-shaping|top-entropy] [flags of analyze]
  papo stats    IN -o PART [reweight flags] (a data-parallel rank's additive per-step partials; sum the ranks' and pass --global-stats to reweight)
  papo report   IN... -o report.html [--png DIR] [--vocab tokenizer.json] [--top N] [flags of reweight] (figures of one or more runs, methods side by side)
  papo serve    --listen unix:///PATH|tcp://127.0.0.1:PORT|stdio [--state-dir DIR] [--metrics ADDR] [reweight flags]
  papo bench    [--vocab V] [--tokens N] [--dtype LIST] [--device auto|cpu|cuda] [--peers] (engine throughput vs memory bandwidth; --peers: vs the C roofline, PyTorch and NumPy)
  papo probe    (lists CUDA devices; exit 0 when one is usable)
  papo version

IN and OUT may be "-" for stdin / stdout (Arrow IPC stream). Run "papo COMMAND -h" for a command's flags.
`

// usageError marks errors that exit with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() { os.Exit(mainCode()) }

// mainCode is main's work: its deferred calls (the profile) run before the process exits.
func mainCode() int {
	// PAPO_CPUPROFILE=FILE writes a CPU profile of the run (for `go tool pprof`).
	if path := os.Getenv("PAPO_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		} else {
			fmt.Fprintf(os.Stderr, "papo: cannot write the CPU profile to %s\n", path)
		}
	}
	code := execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	// PAPO_PEAK_RSS=FILE writes the process's peak resident memory in bytes to FILE at exit
	// (papo bench times papo analyze as a child process and reads it there; Linux).
	if path := os.Getenv(peakRSSEnv); path != "" {
		if b, err := vmHWM("/proc/self/status"); err == nil {
			os.WriteFile(path, []byte(strconv.FormatInt(b, 10)), 0o644)
		}
	}
	return code
}

// peakRSSEnv names the file for the peak resident memory at exit.
const peakRSSEnv = "PAPO_PEAK_RSS"

// vmHWM is the peak resident set in bytes that the status file of a process (/proc/PID/status,
// Linux) gives. Unlike a child's rusage, it counts the process's own memory only (the Go runtime
// starts a child with vfork, so the child's ru_maxrss starts from the parent's).
func vmHWM(status string) (int64, error) {
	data, err := os.ReadFile(status)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/PID/status")
}

// execute is main without the process: it returns the exit status.
func execute(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return executeIn(&environment{stdin: stdin, stdout: stdout, stderr: stderr}, args)
}

func executeIn(env *environment, args []string) (code int) {
	stderr, stdout := env.stderr, env.stdout
	defer func() {
		// A panic is a bug in papo, never the user's fault; say so in one line instead of a
		// trace (PAPO_DEBUG=1 keeps the trace for whoever fixes it).
		if r := recover(); r != nil {
			if os.Getenv("PAPO_DEBUG") != "" {
				panic(r)
			}
			fmt.Fprintf(stderr, "papo: internal error: %v\n(this is a bug in papo; rerun with PAPO_DEBUG=1 for a trace and report it)\n", r)
			code = 1
		}
	}()
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	var err error
	switch args[0] {
	case "gen":
		err = runGen(env, args[1:])
	case "analyze":
		err = runAnalyze(env, args[1:], "analyze")
	case "reweight":
		err = runAnalyze(env, args[1:], "reweight")
	case "stats":
		err = runAnalyze(env, args[1:], "stats")
	case "report":
		err = runReport(env, args[1:])
	case "serve":
		err = runServe(env, args[1:])
	case "probe":
		err = runProbe(env, args[1:])
	case "bench":
		err = runBench(env, args[1:])
	case "version", "--version":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
	default:
		fmt.Fprintf(stderr, "papo: unknown command %q\n\n%s", args[0], usageText)
		return 2
	}
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "papo %s: %v\n", args[0], err)
		return 2
	}
	if errors.Is(err, errHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "papo %s: %v\n", args[0], err)
	return 1
}

// environment is what a command may touch of the process.
type environment struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// at, when set (tests only), is called at the named points of a run ("batch" after each
	// batch, "closed", "finished", "committed"); the transaction tests kill the process there.
	at func(point string)
	// signals, when set (tests), replaces SIGINT/SIGTERM for papo serve; serveReady is told
	// where it listens once it does.
	signals    chan os.Signal
	serveReady func(addresses []string)
}

func (e *environment) reached(point string) {
	if e.at != nil {
		e.at(point)
	}
}

func versionString() string {
	v := "papo (devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = "papo " + bi.Main.Version
	}
	if cudaBuiltIn {
		v += " with CUDA"
	}
	if frontEnd {
		v += ", front end (serve, report, bench and Parquet in " + fullBinary + ")"
	}
	return v
}
