//go:build cuda

// Command gpubench measures the CUDA engine against the device's own limit and prints a table:
// the device's memory bandwidth measured with device-to-device copies (cuMemcpyDtoD: each byte
// read and written once, so bandwidth = 2·bytes/time), the kernel alone on logits already on the
// device (CUDA events; GB/s of logits read, and that as a fraction of the copy bandwidth), and
// end to end from host memory (pinned staging, PCIe, kernel, results back: tokens/s), with the
// CPU engine's end-to-end rate beside it. bench/gpu.sh runs it; it needs a CUDA device.
//
//	gpubench -rows 8192 -V 151936 -dtype all -reps 20
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/entropy-polarity/papo/bench"
	"github.com/entropy-polarity/papo/cuda"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

// target is the goal: the kernel reads logits at ≥ 80 % of the measured bandwidth.
const target = 0.80

type row struct {
	dt                 polarity.Dtype
	kernel             cuda.Timing
	kernelGBs, ofCopy  float64
	gpuTokS, gpuGBs    float64
	cpuTokS            float64
	maxErrH, maxErrLog float64
}

func main() {
	var (
		rows     = flag.Int("rows", 8192, "token rows per batch")
		V        = flag.Int("V", 151936, "vocabulary size")
		dtypes   = flag.String("dtype", "all", "float32, float16, bfloat16 or all")
		reps     = flag.Int("reps", 20, "timed kernel launches / copies")
		e2eReps  = flag.Int("e2e-reps", 3, "timed end-to-end passes (best kept)")
		device   = flag.Int("device", 0, "CUDA device ordinal")
		copySize = flag.Int64("copy-bytes", 2<<30, "bytes per device-to-device copy")
		withCPU  = flag.Bool("cpu", true, "also time the CPU engine end to end")
		seed     = flag.Uint64("seed", 1, "workload seed")
	)
	flag.Parse()
	if err := run(*rows, *V, *dtypes, *reps, *e2eReps, *device, *copySize, *withCPU, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "gpubench:", err)
		os.Exit(1)
	}
}

func run(rows, V int, dtypes string, reps, e2eReps, device int, copySize int64, withCPU bool, seed uint64) error {
	var dts []polarity.Dtype
	if dtypes == "all" {
		dts = []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16}
	} else {
		for _, s := range strings.Split(dtypes, ",") {
			dt, err := polarity.ParseDtype(s)
			if err != nil {
				return err
			}
			dts = append(dts, dt)
		}
	}
	e, err := cuda.New(cuda.Options{Device: device})
	if err != nil {
		return err
	}
	defer e.Close()
	var probe strings.Builder
	if err := cuda.Probe(&probe); err != nil {
		return err
	}
	fmt.Print(probe.String())

	cp, err := e.MeasureCopy(copySize, reps)
	if err != nil {
		return fmt.Errorf("copy bandwidth: %w", err)
	}
	copyBW := 2 * float64(copySize) / cp.Median
	fmt.Printf("device copy bandwidth: %.0f GB/s (cuMemcpyDtoD of %d MiB, read + write; median of %d, best %.0f GB/s)\n",
		copyBW/1e9, copySize>>20, reps, 2*float64(copySize)/cp.Min/1e9)
	hostBW := bench.ReadBandwidth(runtime.GOMAXPROCS(0), 1<<30, 3)
	fmt.Printf("host read bandwidth: %.1f GB/s (%d threads)\n", hostBW/1e9, runtime.GOMAXPROCS(0))

	ctx := context.Background()
	var results []row
	for _, dt := range dts {
		fmt.Printf("\n%v: building %d × %d logits (%.2f GB)…\n", dt, rows, V, float64(rows*V*dt.Size())/1e9)
		w := bench.NewWorkload(rows, V, dt, seed)
		r := row{dt: dt}
		var out polarity.Result
		if r.kernel, err = e.MeasureKernel(&w.Batch, w.Params, reps, &out); err != nil {
			return fmt.Errorf("%v kernel: %w", dt, err)
		}
		bytes := float64(w.Bytes())
		r.kernelGBs = bytes / r.kernel.Median / 1e9
		r.ofCopy = bytes / r.kernel.Median / copyBW
		fmt.Printf("kernel: median %.3f ms, best %.3f ms over %d launches: %.0f GB/s = %.1f%% of copy bandwidth\n",
			r.kernel.Median*1e3, r.kernel.Min*1e3, reps, r.kernelGBs, 100*r.ofCopy)
		// Spot-check the kernel's results against the float64 reference on a few rows.
		r.maxErrH, r.maxErrLog = spotCheck(&w.Batch, w.Params, &out)
		tp, err := bench.Run(ctx, e, w, e2eReps)
		if err != nil {
			return fmt.Errorf("%v end to end: %w", dt, err)
		}
		r.gpuTokS, r.gpuGBs = tp.TokensPerSec, tp.BytesPerSec/1e9
		fmt.Printf("end to end (host → GPU → host): %.0f tokens/s, %.1f GB/s of logits\n", r.gpuTokS, r.gpuGBs)
		if withCPU {
			ctp, err := bench.Run(ctx, polarity.NewCPU(0), w, 1)
			if err != nil {
				return fmt.Errorf("%v CPU engine: %w", dt, err)
			}
			r.cpuTokS = ctp.TokensPerSec
			fmt.Printf("CPU engine end to end: %.0f tokens/s\n", r.cpuTokS)
		}
		results = append(results, r)
		runtime.GC() // the next dtype's workload needs the memory of this one

	}

	fmt.Printf("\n%s, V=%d, %d rows; copy bandwidth %.0f GB/s; kernel target ≥ %.0f%% of it\n",
		e.Name(), V, rows, copyBW/1e9, 100*target)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "dtype\tkernel ms\tkernel GB/s\t% of copy BW\ttarget\te2e tokens/s\te2e GB/s\tCPU tokens/s\tmax rel err H\tmax rel err log π\t")
	for _, r := range results {
		verdict := "met"
		if r.ofCopy < target {
			verdict = "MISSED"
		}
		cpu := "-"
		if r.cpuTokS > 0 {
			cpu = fmt.Sprintf("%.0f", r.cpuTokS)
		}
		fmt.Fprintf(tw, "%v\t%.3f\t%.0f\t%.1f\t%s\t%.0f\t%.1f\t%s\t%.1e\t%.1e\t\n",
			r.dt, r.kernel.Median*1e3, r.kernelGBs, 100*r.ofCopy, verdict, r.gpuTokS, r.gpuGBs, cpu, r.maxErrH, r.maxErrLog)
	}
	return tw.Flush()
}

// spotCheck compares 16 rows of out with the float64 reference and returns the largest
// relative errors of H and log π_a (the equivalence tests hold every output to tolerance; this
// is a sanity line in the benchmark table).
func spotCheck(b *polarity.Batch, p polarity.Params, out *polarity.Result) (errH, errLog float64) {
	n := b.Rows()
	V := b.Logits.V
	u := make([]float64, V)
	rng := polaritytest.Rand(int64(n))
	for range 16 {
		i := rng.IntN(n)
		for j := range u {
			u[j] = float64(b.Logits.At(i, j)) / p.Temperature
		}
		st := polarity.ReferenceRow(u, int(b.TokenID[i]))
		errH = max(errH, rel(float64(out.Entropy[i]), st.H))
		errLog = max(errLog, rel(float64(out.Logprob[i]), st.Logprob))
	}
	return errH, errLog
}

func rel(got, want float64) float64 {
	if got == want {
		return 0
	}
	d := got - want
	if d < 0 {
		d = -d
	}
	if want < 0 {
		want = -want
	}
	return d / max(want, 1e-30)
}
