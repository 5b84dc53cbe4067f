//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"gorgonia.org/cu"

	"github.com/entropy-polarity/papo/kernels"
)

// MinComputeCapability is the lowest compute capability the kernels run on: their PTX targets
// sm_80 (max.NaN.f32).
const MinComputeCapability = 80

// Device describes one CUDA device as Probe finds it.
type Device struct {
	Ordinal      int
	Name         string
	Major, Minor int   // compute capability
	Memory       int64 // bytes
	SMs          int
	Err          error // why papo's kernels cannot run on it; nil when they load
}

// Devices lists the CUDA devices and, for each, whether the kernels' module loads on it (a
// context is created and the PTX JIT-compiled, then both are released).
func Devices() ([]Device, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("cuDeviceGetCount: %w", asDriverError(err))
	}
	var devs []Device
	for i := range n {
		d := Device{Ordinal: i}
		dev := cu.Device(i)
		var errs []error
		var e error
		if d.Name, e = dev.Name(); e != nil {
			errs = append(errs, fmt.Errorf("cuDeviceGetName: %w", asDriverError(e)))
		}
		if d.Major, e = dev.Attribute(cu.ComputeCapabilityMajor); e != nil {
			errs = append(errs, fmt.Errorf("cuDeviceGetAttribute: %w", asDriverError(e)))
		}
		if d.Minor, e = dev.Attribute(cu.ComputeCapabilityMinor); e != nil {
			errs = append(errs, fmt.Errorf("cuDeviceGetAttribute: %w", asDriverError(e)))
		}
		if d.SMs, e = dev.Attribute(cu.MultiprocessorCount); e != nil {
			errs = append(errs, fmt.Errorf("cuDeviceGetAttribute: %w", asDriverError(e)))
		}
		if d.Memory, e = dev.TotalMem(); e != nil {
			errs = append(errs, fmt.Errorf("cuDeviceTotalMem: %w", asDriverError(e)))
		}
		switch {
		case len(errs) > 0:
			d.Err = errors.Join(errs...)
		case 10*d.Major+d.Minor < MinComputeCapability:
			d.Err = fmt.Errorf("compute capability %d.%d is below the kernels' %d.%d", d.Major, d.Minor, MinComputeCapability/10, MinComputeCapability%10)
		default:
			d.Err = loadKernels(dev)
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// loadKernels creates a context on dev, loads the kernels' module and finds every kernel, on a
// locked thread, and releases it all.
func loadKernels(dev cu.Device) error {
	res := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ctx, err := dev.MakeContext(cu.SchedAuto)
		if err != nil {
			res <- fmt.Errorf("cuCtxCreate: %w", asDriverError(err))
			return
		}
		err = func() error {
			mod, err := cu.LoadData(kernels.PTX)
			if err != nil {
				return fmt.Errorf("cuModuleLoadData (JIT of the kernels' PTX): %w", asDriverError(err))
			}
			defer mod.Unload()
			for _, name := range kernels.Kernels {
				if _, err := mod.Function(name); err != nil {
					return fmt.Errorf("cuModuleGetFunction(%s): %w", name, asDriverError(err))
				}
			}
			return nil
		}()
		if derr := ctx.Destroy(); derr != nil && err == nil {
			err = fmt.Errorf("cuCtxDestroy: %w", asDriverError(derr))
		}
		res <- err
	}()
	return <-res
}

// Probe writes the driver version and one line per CUDA device (name, compute capability,
// memory, multiprocessors, whether papo's kernels load) to w. It returns nil when at least one
// device can run the kernels, else an error that says why none can.
func Probe(w io.Writer) error {
	v := cu.Version()
	devs, err := Devices()
	if err != nil {
		return fmt.Errorf("no usable CUDA device: %w", err)
	}
	fmt.Fprintf(w, "CUDA driver %d.%d, %d device(s)\n", v/1000, v%1000/10, len(devs))
	var why []string
	for _, d := range devs {
		state := "kernels load"
		if d.Err != nil {
			state = "unusable: " + d.Err.Error()
			why = append(why, fmt.Sprintf("cuda:%d: %v", d.Ordinal, d.Err))
		}
		fmt.Fprintf(w, "cuda:%d  %s  compute capability %d.%d  %.1f GiB  %d SMs  %s\n",
			d.Ordinal, d.Name, d.Major, d.Minor, float64(d.Memory)/(1<<30), d.SMs, state)
	}
	if len(why) == len(devs) {
		if len(devs) == 0 {
			return errors.New("no usable CUDA device: the driver reports 0 devices")
		}
		return fmt.Errorf("no usable CUDA device: %s", strings.Join(why, "; "))
	}
	return nil
}
