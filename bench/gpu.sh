#!/usr/bin/env bash
# bench/gpu.sh: the GPU check of papo on a CUDA host, in one command.
#
#   1. builds papo-cuda, the CUDA engine's test binary and the GPU benchmark (go build -tags cuda);
#   2. papo-cuda probe: the devices, and that the kernels' PTX loads on them;
#   3. the GPU tests: equivalence with the CPU engine and the float64 reference on fresh random
#      data (a new seed each run, printed) and on the shared table of hard rows, every dtype,
#      V ∈ {1, 31, 32, 1000, 128256, 151936, 152064}, −Inf and extreme rows, row counts that are
#      not multiples of the block size, > 14,134 rows in one launch, out-of-memory fallback;
#   4. the benchmark: device copy bandwidth (cuMemcpyDtoD), kernel-only GB/s against it, and
#      end-to-end tokens/s (GPU and CPU engines) at V = 151,936, 8,192 tokens;
# and prints a short table last. Exit status: non-zero if a build, the probe or a test fails.
#
# Usage:
#   bench/gpu.sh                     build here and run (needs Go, CUDA 11.x/12.x headers, a GPU)
#   bench/gpu.sh --build-only DIR    only build the three binaries into DIR (no GPU needed)
#   bench/gpu.sh --prebuilt DIR      run binaries built earlier with --build-only
# gorgonia.org/cu does not compile against CUDA 13 headers (docs/DESIGN.md): on such a host, build
# with --build-only on an x86-64 Linux machine with CUDA 11.x/12.x headers (the driver API is
# backward compatible; the binaries need a glibc at least as new as the build machine's) and
# run them here with --prebuilt.
# Environment: ROWS (8192), V (151936), REPS (20), PAPO_SEED (fixes the tests' random data).
set -euo pipefail

cd "$(dirname "$0")/.."
ROWS=${ROWS:-8192}
V=${V:-151936}
REPS=${REPS:-20}
mode=run
bin=""
case "${1:-}" in
--build-only) mode=build; bin=${2:?--build-only needs a directory} ;;
--prebuilt) mode=prebuilt; bin=${2:?--prebuilt needs a directory} ;;
"") ;;
*) echo "usage: bench/gpu.sh [--build-only DIR | --prebuilt DIR]" >&2; exit 2 ;;
esac

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
declare -a summary

build() {
	local dir=$1 hdr
	mkdir -p "$dir"
	for hdr in /usr/local/cuda/include/cuda.h /usr/include/cuda.h; do
		if [ -f "$hdr" ]; then
			ver=$(awk '/^#define CUDA_VERSION /{print $3; exit}' "$hdr")
			if [ -n "$ver" ] && [ "$ver" -ge 13000 ]; then
				echo "gpu.sh: $hdr is CUDA ${ver:0:2}.x: gorgonia.org/cu needs 11.x/12.x headers." >&2
				echo "  Build on another x86-64 Linux machine with bench/gpu.sh --build-only DIR, copy DIR here," >&2
				echo "  and run bench/gpu.sh --prebuilt DIR." >&2
				exit 1
			fi
			break
		fi
	done
	echo "== building papo-cuda, the CUDA tests and gpubench into $dir"
	# Without symbol tables (-s -w) the three binaries are ~40 MB instead of ~58 MB, small enough
	# to travel to a GPU host with the source tree; panics still print file:line.
	local ld=(-trimpath -ldflags='-s -w')
	go build -tags cuda "${ld[@]}" -o "$dir/papo-cuda" ./cmd/papo
	go test -c -tags cuda "${ld[@]}" -o "$dir/cuda.test" ./cuda
	go build -tags cuda "${ld[@]}" -o "$dir/gpubench" ./bench/gpubench
}

case $mode in
build)
	build "$bin"
	echo "built: $(ls "$bin" | tr '\n' ' ')"
	exit 0
	;;
run)
	bin="$log/bin"
	build "$bin"
	;;
prebuilt)
	for f in papo-cuda cuda.test gpubench; do
		[ -x "$bin/$f" ] || { echo "gpu.sh: $bin/$f missing (build it with --build-only)" >&2; exit 1; }
	done
	;;
esac

if command -v nvidia-smi >/dev/null 2>&1; then
	nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader || true
fi

echo "== papo-cuda probe"
if "$bin/papo-cuda" probe; then
	summary+=("probe|ok")
else
	echo "gpu.sh: papo-cuda probe failed: no usable device, nothing to test" >&2
	exit 1
fi

echo "== GPU tests (equivalence with the CPU engine and the float64 reference)"
status=0
seed=${PAPO_SEED:-$(date +%s%N)}
if PAPO_SEED=$seed "$bin/cuda.test" -test.v -test.count=1 -test.timeout=30m >"$log/tests.txt" 2>&1; then
	summary+=("GPU tests (seed $seed)|PASS")
else
	status=1
	summary+=("GPU tests (seed $seed)|FAIL (rerun with PAPO_SEED=$seed)")
fi
grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|SKIP|PASS|FAIL|ok)' "$log/tests.txt" | grep -v '^=== RUN' || true
if [ $status -ne 0 ]; then
	echo "--- failing test output (last 80 lines):"
	tail -n 80 "$log/tests.txt"
fi
# The accuracy tables CheckEngine logs (worst error per row kind, as a fraction of tolerance).
grep -A 70 'accuracy against the float64 reference' "$log/tests.txt" | grep -E 'accuracy against|max err/tol' | head -n 80 || true

echo "== benchmark: V=$V, $ROWS rows, $REPS repetitions"
if "$bin/gpubench" -rows "$ROWS" -V "$V" -reps "$REPS" -dtype all >"$log/bench.txt" 2>&1; then
	summary+=("benchmark|ran")
else
	status=1
	summary+=("benchmark|FAILED")
fi
# Everything but the final table, then the table last.
table_start=$(grep -n 'kernel target' "$log/bench.txt" | tail -n 1 | cut -d: -f1 || true)
if [ -n "$table_start" ]; then
	head -n $((table_start - 1)) "$log/bench.txt"
else
	cat "$log/bench.txt"
fi

echo
echo "== summary"
for s in "${summary[@]}"; do
	printf '%-40s %s\n' "${s%%|*}" "${s#*|}"
done
if [ -n "$table_start" ]; then
	echo
	tail -n +"$table_start" "$log/bench.txt"
fi
exit $status
