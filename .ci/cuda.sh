#!/usr/bin/env bash
# CI for the CUDA side of papo, on a machine without a GPU (a GPU, if there is one, is used):
#   - the CUDA toolkit (nvcc, ptxas, cuda.h, libcuda.so.1) from Debian non-free;
#   - the committed PTX matches its sources; ptxas: no stack frame or spills for sm_80/sm_90;
#   - go vet and go build with -tags cuda (papo-cuda);
#   - package guard is initialised before gorgonia.org/cu (its imports are a subset of cu's);
#   - the kernels' arithmetic compiled for the host against the float64 reference on the shared
#     table of hard rows (cuda/hostref, also under AddressSanitizer: the kernels' loads stay
#     inside the logits), the Go model of the kernels' reduction tree against the single pass
#     (kernels), the GPU-failure fallback (cuda/fallback);
#   - polarity.cu's 64-bit row offsets under the host emulator: one launch of 3 rows of 2^28
#     float32 logits, the last row at 2 GiB (cuda/kernelemu, PAPO_KERNELEMU_BIG; timed);
#   - papo-cuda probe on a GPU-less host exits 3 with a clear message, and the GPU test binary
#     prints "SKIP: no usable CUDA device: CUDA_ERROR_… (…)" and no PASS (go test: "[no tests to
#     run]"); on a GPU host, probe succeeds and the GPU tests run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "CUDA toolkit"
bash .ci/cuda-toolkit.sh

step "PTX is current; ptxas resources"
make -C kernels check-ptx ptxas-report

step "go vet (with and without -tags cuda)"
go vet -tags cuda ./cuda/... ./cmd/... ./bench/... ./kernels/...
go vet ./cuda/... ./kernels/...

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "go build -tags cuda (papo-cuda, gpubench)"
go build -tags cuda -o "$tmp/papo-cuda" ./cmd/papo
go build -tags cuda -o "$tmp/gpubench" ./bench/gpubench

step "package guard initialises before gorgonia.org/cu"
extra=$(comm -23 <(go list -tags cuda -deps ./cuda/guard | sort) <(go list -tags cuda -deps gorgonia.org/cu | sort) |
	grep -vx 'github.com/entropy-polarity/papo/cuda/guard' || true)
if [ -n "$extra" ]; then
	echo "cuda/guard imports packages gorgonia.org/cu does not: it may be initialised after cu:" >&2
	echo "$extra" >&2
	exit 1
fi
echo "ok: guard's imports are a subset of cu's, and its import path sorts first"

step "kernel arithmetic on the host, reduction tree model, fallback"
go test -count=1 ./kernels/ ./cuda/...

step "kernel memory walk under AddressSanitizer (no read past a batch's logits)"
go test -asan -count=1 -run 'TestKernelArithmetic|TestRowStateAlignment' ./cuda/hostref/
# polarity.cu itself, run by the host emulator: -asan instruments only C, so the C++ gets the flag
# here.
CGO_CXXFLAGS="-O2 -g -fsanitize=address" go test -asan -count=1 ./cuda/kernelemu/

step "64-bit row offsets: polarity.cu under the emulator, last row at 2 GiB"
# 3 GiB of MAP_NORESERVE zero pages with one spike per row: the launch reads them all, but
# untouched pages are the shared zero page (measured: peak RSS 8 MB, 9.4-13 s on 2 cores). The test
# skips itself if the mmap fails: here that is a failure.
t0=$(date +%s.%N)
big=$(PAPO_KERNELEMU_BIG=1 go test -count=1 -v -run '^TestLaunch64BitRowOffset$' ./cuda/kernelemu/ 2>&1) || {
	echo "$big"
	exit 1
}
echo "$big" | grep -v '^=== RUN'
grep -q '^--- PASS: TestLaunch64BitRowOffset ' <<<"$big" || { echo "TestLaunch64BitRowOffset did not run and pass" >&2; exit 1; }
awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "TestLaunch64BitRowOffset: %.1f s (go test, build included)\n", t1 - t0 }'

step "papo-cuda probe"
set +e
out=$("$tmp/papo-cuda" probe 2>&1)
code=$?
set -e
echo "$out"
echo "exit status $code"
if [ $code -eq 0 ]; then
	step "a GPU is present: GPU tests"
	go test -tags cuda -count=1 -v ./cuda/ 2>&1 | tee "$tmp/gpu-tests.txt"
	if grep -q '^SKIP: no usable CUDA device' "$tmp/gpu-tests.txt"; then
		echo "papo-cuda probe found a device but the GPU test binary skipped" >&2
		exit 1
	fi
else
	if [ $code -ne 3 ] || ! grep -q '^papo-cuda: no usable CUDA device: CUDA_ERROR_[A-Z_]* (' <<<"$out"; then
		echo "papo-cuda probe on a GPU-less host: want exit status 3 and 'papo-cuda: no usable CUDA device: CUDA_ERROR_… (…)'" >&2
		exit 1
	fi
	step "GPU tests skip clearly without a device"
	# -v: go test shows a passing package's output only then. Status 0 (a skip is no failure),
	# guard's SKIP line with the reason, go test's "[no tests to run]", and no PASS anywhere.
	skip=$(go test -tags cuda -count=1 -v ./cuda/ 2>&1) || { echo "$skip"; echo "the -tags cuda test binary failed without a device (want a SKIP, status 0)" >&2; exit 1; }
	echo "$skip"
	grep -q '^SKIP: no usable CUDA device: CUDA_ERROR_[A-Z_]* (.*)' <<<"$skip" ||
		{ echo "the -tags cuda tests did not print 'SKIP: no usable CUDA device: CUDA_ERROR_… (…)'" >&2; exit 1; }
	grep -q '^ok .*\[no tests to run\]$' <<<"$skip" || { echo "go test did not report '[no tests to run]'" >&2; exit 1; }
	if grep -qE '^(PASS|--- PASS|=== RUN)' <<<"$skip"; then
		echo "the -tags cuda tests reported a PASS or ran a test without a device" >&2
		exit 1
	fi
fi
echo
echo "cuda CI: ok"
