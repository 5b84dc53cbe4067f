#!/usr/bin/env bash
# Installs the CUDA toolkit (nvcc, ptxas, cuda.h) and the user-space driver library (libcuda.so.1)
# from Debian's contrib/non-free components, as docs/DESIGN.md "CUDA build facts" describes. No GPU is
# needed: with no device, cuInit returns CUDA_ERROR_NO_DEVICE, which papo-cuda probe reports.
# Skips everything when nvcc is already on PATH.
set -euo pipefail

if command -v nvcc >/dev/null 2>&1; then
	echo "cuda-toolkit: nvcc already present ($(command -v nvcc)); skipping install"
	exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi

# Enable contrib and non-free alongside main without naming any mirror: reuse the sources
# file the image already has.
src=/etc/apt/sources.list.d/debian.sources
if [ ! -f /etc/apt/sources.list.d/nonfree.sources ]; then
	if [ ! -f "$src" ]; then
		echo "cuda-toolkit: $src not found; cannot enable Debian's non-free component" >&2
		exit 1
	fi
	sed 's/^Components: main$/Components: contrib non-free/' "$src" |
		$sudo tee /etc/apt/sources.list.d/nonfree.sources >/dev/null
fi
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends nvidia-cuda-toolkit libcuda1
command -v nvcc >/dev/null || { echo "cuda-toolkit: nvcc still missing after install" >&2; exit 1; }
nvcc --version | tail -n 2
