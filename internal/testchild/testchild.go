// Package testchild helps tests that run their own test binary again as a child process (to
// kill it, or to let it crash): the child's environment.
package testchild

import "os"

// Env is the environment for a child process: this process's, then extra. GORACE gains
// atexit_sleep_ms=0: a -race binary otherwise sleeps 1 s at exit, which would dominate tests
// that restart a child many times.
func Env(extra ...string) []string {
	env := append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	return append(env, extra...)
}
