#!/bin/sh
# gpu-bundle.sh — for a GPU machine that has the NVIDIA driver but no
# compiler or -dev packages: builds the tools, their tests and the CUDA
# backend here (BUILD=build-gpu, ARCH=-march=x86-64-v3 by default, so the
# bundle runs on any recent x86-64 host) and copies them, with the shared
# libraries they load that a bare host may lack (OpenBLAS, cJSON, zstd,
# utf8proc, Open MPI; packed in lib.tar.xz), into gpu-bundle/ at the top
# of the tree. Copy the
# tree there (gpu-bundle/ included) and run scripts/gpu-run.sh: GPU tests,
# then make bench-gpu's rows, in one go.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build=${BUILD:-build-gpu}
arch=${ARCH:--march=x86-64-v3}
gpu_tests=$(ls tests/gpu/*.c | sed "s|tests/gpu/\(.*\)\.c|$build/tests/gpu/\1.t|")
make -j"$(nproc)" BUILD="$build" BIN="$build/bin" ARCH="$arch" all $gpu_tests >/dev/null
[ -f "$build/libtunepipe-cuda.so" ] || { echo "gpu-bundle: no CUDA backend built (no nvcc?)" >&2; exit 1; }
rm -rf gpu-bundle
mkdir -p gpu-bundle/bin gpu-bundle/lib gpu-bundle/tests/gpu
cp "$build"/bin/* gpu-bundle/bin/
cp "$build"/tests/*.t gpu-bundle/tests/
cp "$build"/tests/gpu/*.t gpu-bundle/tests/gpu/
cp "$build/libtunepipe-cuda.so" gpu-bundle/
# what the tools load beyond the C and C++ runtimes and the CUDA libraries
ldd gpu-bundle/bin/* gpu-bundle/libtunepipe-cuda.so 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
	grep -v -E '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|libz|libcublas|libcublasLt|libcudart)\.so' |
	while read -r lib; do cp -L "$lib" gpu-bundle/lib/; done
strip gpu-bundle/bin/* gpu-bundle/tests/*.t gpu-bundle/tests/gpu/*.t gpu-bundle/libtunepipe-cuda.so gpu-bundle/lib/*
# packed: 49 MB of libraries (OpenBLAS alone 35) are 9 MB in xz, a bundle
# small enough to send with every call; gpu-run.sh unpacks them
tar -C gpu-bundle -cf - lib | xz -6 -T0 >gpu-bundle/lib.tar.xz
rm -rf gpu-bundle/lib
du -sh gpu-bundle
