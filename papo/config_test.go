package papo

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	// The defaults docs/MATH.md §5 states.
	want := map[string]float64{
		"β": c.Phase.Beta, "W": float64(c.Phase.Window), "λ": c.Lambda, "ratio": c.ClipCov.Ratio,
		"clip low": c.ClipCov.Low, "clip high": c.ClipCov.High, "kl ratio": c.KLCov.Ratio,
		"steer min": c.STEER.Min, "steer max": c.STEER.Max, "top": c.TopEntropy.Fraction,
	}
	is := map[string]float64{
		"β": 0.9, "W": 10, "λ": 0.5, "ratio": 2e-4, "clip low": 1, "clip high": 5, "kl ratio": 2e-4,
		"steer min": 0.8, "steer max": 1.2, "top": 0.2,
	}
	for k, v := range is {
		if want[k] != v {
			t.Errorf("default %s = %v, want %v", k, want[k], v)
		}
	}
	if c.Method != MethodPAPO || c.G != GSign || c.Renormalize || c.Phase.Mode != PhaseSlope {
		t.Errorf("defaults %+v: want method papo, g sign, no renormalization, slope mode", c)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"λ = 1", func(c *Config) { c.Lambda = 1 }, "lambda λ = 1: want a value in [0, 1)"},
		{"λ < 0", func(c *Config) { c.Lambda = -0.1 }, "lambda λ = -0.1"},
		{"λ = 0", func(c *Config) { c.Lambda = 0 }, ""},
		{"unknown method", func(c *Config) { c.Method = "ppo" }, `method "ppo": want one of papo, clip-cov`},
		{"unknown g", func(c *Config) { c.G = "relu" }, `g "relu"`},
		{"renormalize a baseline", func(c *Config) { c.Method, c.Renormalize = MethodSTEER, true }, "renormalize applies to method \"papo\" only"},
		{"clip-cov ratio 0", func(c *Config) { c.ClipCov.Ratio = 0 }, "clip-cov ratio 0"},
		{"clip-cov bounds reversed", func(c *Config) { c.ClipCov.Low, c.ClipCov.High = 5, 1 }, "clip-cov bounds [5, 1]"},
		{"kl-cov coef < 0", func(c *Config) { c.KLCov.Coef = -1 }, "kl-cov coefficient -1"},
		{"steer min 0", func(c *Config) { c.STEER.Min = 0 }, "steer range [0, 1.2]"},
		{"shaping κ = 1", func(c *Config) { c.Shaping.Kappa = 1 }, "entropy shaping κ = 1"},
		{"top fraction 0", func(c *Config) { c.TopEntropy.Fraction = 0 }, "top-entropy fraction 0"},
		{"phase β = 1", func(c *Config) { c.Phase.Beta = 1 }, "EMA β = 1"},
		{"W = 0", func(c *Config) { c.Phase.Window = 0 }, "window W = 0"},
		{"target H* = 0", func(c *Config) { c.Phase.Mode = PhaseTarget }, "H* = 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			checkErr(t, err, tc.want)
		})
	}
	// Several problems are reported together.
	c := DefaultConfig()
	c.Lambda, c.Phase.Window = 2, 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "lambda") || !strings.Contains(err.Error(), "window") {
		t.Errorf("got %v, want both the λ and the W problem", err)
	}
}

// leafFields counts the scalar fields of a struct type, recursively.
func leafFields(t reflect.Type) int {
	n := 0
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i).Type; f.Kind() == reflect.Struct {
			n += leafFields(f)
		} else {
			n++
		}
	}
	return n
}

func TestRegisterFlags(t *testing.T) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("reweight", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if want := leafFields(reflect.TypeOf(c)); n != want {
		t.Errorf("%d flags for %d Config fields: every parameter needs exactly one flag", n, want)
	}
	err := fs.Parse([]string{"--method", "steer", "--phase-mode", "target", "--target-entropy", "0.6",
		"--ema-beta", "0.8", "--phase-window", "7", "--lambda", "0.3", "--weight-fn", "tanh",
		"--steer-min", "0.7", "--clip-cov-seed", "42", "--top-fraction", "0.3"})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Method, want.Phase.Mode, want.Phase.TargetEntropy, want.Phase.Beta, want.Phase.Window = MethodSTEER, PhaseTarget, 0.6, 0.8, 7
	want.Lambda, want.G, want.STEER.Min, want.ClipCov.Seed, want.TopEntropy.Fraction = 0.3, GTanh, 0.7, 42, 0.3
	if !reflect.DeepEqual(c, want) {
		t.Errorf("after parsing:\n got %+v\nwant %+v", c, want)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	want := DefaultConfig()
	want.Method, want.Lambda, want.Phase.Mode, want.Phase.TargetEntropy, want.KLCov.Coef = MethodKLCov, 0.25, PhaseTarget, 0.6, 0.5
	cases := []struct {
		name, file, content string
		err                 string // "" for success (the result must equal want)
	}{
		{"toml", "c.toml", "method = \"kl-cov\"\nlambda = 0.25\n[phase]\nmode = \"target\"\ntarget_entropy = 0.6\n[kl_cov]\ncoef = 0.5\n", ""},
		{"json", "c.json", `{"method": "kl-cov", "lambda": 0.25, "phase": {"mode": "target", "target_entropy": 0.6}, "kl_cov": {"coef": 0.5}}`, ""},
		{"toml unknown key", "c.toml", "lambda = 0.25\nlamda = 0.3\n[phase]\nwindoww = 3\n", "unknown key(s) lamda, phase.windoww"},
		{"json unknown key", "c.json", `{"lambda": 0.25, "phase": {"windoww": 3}}`, `unknown field "windoww"`},
		{"toml bad type", "c.toml", "[phase]\nwindow = \"ten\"\n", "c.toml"},
		{"json bad type", "c.json", `{"phase": {"window": 1.5}}`, "c.json"},
		{"json trailing data", "c.json", `{"lambda": 0.25} {"lambda": 0.3}`, "unexpected data after the JSON object"},
		{"yaml", "c.yaml", "lambda: 0.25\n", `unknown extension ".yaml"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			err := LoadConfig(writeFile(t, dir, tc.file, tc.content), &c)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(c, want) {
					t.Errorf("\n got %+v\nwant %+v", c, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("got %v, want an error containing %q", err, tc.err)
			}
		})
	}
	c := DefaultConfig()
	if err := LoadConfig(filepath.Join(dir, "absent.toml"), &c); err == nil || !strings.Contains(err.Error(), "absent.toml") {
		t.Errorf("missing file: got %v, want an error naming it", err)
	}
}

// checkErr checks a validation result: want "" means valid, else an error containing want.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("got %v, want valid", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error containing %q", err, want)
	}
}
