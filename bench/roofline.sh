#!/usr/bin/env bash
# The C roofline of papo's CPU engine (bench/roofline/roofline.c): the same four sums per row in
# plain C, AVX2+FMA and AVX-512F, gcc -O3, on 1 thread and all threads. Issue 12's target is
# ≥ 75 % of the best ISA's tokens/s end to end; run it in the same session as papo bench.
#   bench/roofline.sh [V] [rows] [reps]
set -euo pipefail
cd "$(dirname "$0")/roofline"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
gcc -O3 -Wall -o "$out/roofline" roofline.c -lm -lpthread
"$out/roofline" "$@"
