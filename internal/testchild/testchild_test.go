package testchild

import (
	"strings"
	"testing"
)

func TestEnv(t *testing.T) {
	t.Setenv("GORACE", "halt_on_error=1")
	env := Env("A=1", "B=2")
	if got := env[len(env)-2:]; got[0] != "A=1" || got[1] != "B=2" {
		t.Fatalf("extra variables %q; want them last, in order", got)
	}
	// The last GORACE wins in exec; it keeps the caller's options.
	var gorace string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GORACE="); ok {
			gorace = v
		}
	}
	if gorace != "halt_on_error=1 atexit_sleep_ms=0" {
		t.Fatalf("GORACE=%q; want the caller's options and atexit_sleep_ms=0", gorace)
	}
}
