package main

import (
	"fmt"
	"os"
	"syscall"

	papoio "github.com/entropy-polarity/papo/io"
)

// The front end (front.go) hands the commands it does not have over to papo-full, the whole
// program: the process image is replaced (syscall.Exec), so the process id, the standard
// streams, signals and the exit status are papo-full's as if it had been started directly.

const (
	fullBinary = "papo-full"
	fullEnv    = "PAPO_FULL"  // the papo-full to hand over to, instead of the one next to papo
	frontEnv   = "PAPO_FRONT" // set in papo-full's environment: the front end that handed over
)

// handOver runs `papo-full command args...` in place of this process. It returns only when it
// could not, with the reason.
func handOver(env *environment, command string, args []string) error {
	bin, err := findSibling(fullBinary, fullEnv, "`make build` builds it beside papo")
	if err != nil {
		return fmt.Errorf("this papo is the front end, and %s is in papo-full: %w", what(command), err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("handing over to %s: %w", bin, err)
	}
	return execAs(bin, append([]string{command}, args...), frontEnv+"="+self)
}

// execAs replaces this process with bin and its arguments, with setting added to the
// environment: the hand-overs to papo-full and to papo-cuda. It returns only when it could not.
func execAs(bin string, args []string, setting string) error {
	err := syscall.Exec(bin, append([]string{bin}, args...), append(os.Environ(), setting))
	return fmt.Errorf("could not start %s: %v", bin, err)
}

// what names the part of papo that a handed-over command needs.
func what(command string) string {
	switch command {
	case "serve", "report", "bench":
		return "papo " + command
	}
	return "Parquet"
}

// needsFull reports whether a run of the front end with these files must be handed over:
// one of them is Parquet, which only papo-full reads and writes ("" and "-" are no file).
func needsFull(paths ...string) bool {
	if !frontEnd {
		return false
	}
	for _, p := range paths {
		if p == "" || p == "-" {
			continue
		}
		if f, _ := papoio.FormatOf(p); f == papoio.FormatParquet {
			return true
		}
	}
	return false
}
