#!/bin/bash
# Checks libkxgpu.so on a machine with an NVIDIA driver, without kxrun:
# NVIDIA's OpenCL (through an .icd naming libnvidia-opencl.so.1) and the CUDA
# driver API (dlsym on a dlopen'd libcuda, and cuGetProcAddress).  A 256 MiB
# partition must allow 4 x 64 MiB and refuse the fifth.  Prints PASS/FAIL
# lines; exit 0 when all pass.
set -u
cd "$(dirname "$0")/../.."
B=$(mktemp -d)
trap 'rm -rf "$B"' EXIT
CFLAGS="-O2 -std=gnu11 -Wall -D_GNU_SOURCE"
CLINC=""
[ -d /usr/local/cuda/include/CL ] && CLINC="-I/usr/local/cuda/include"
cc $CFLAGS -fPIC -fvisibility=hidden -shared -o "$B/libkxgpu.so" \
	bindings/gpu/preload.c bindings/gpu/usage.c $CLINC -ldl -lpthread || exit 1
cc $CFLAGS -o "$B/usage_init" tests/gpu/usage_init.c bindings/gpu/usage.c -lpthread || exit 1
cc $CFLAGS -o "$B/cuda_alloc" tests/gpu/cuda_alloc.c -ldl || exit 1
OCL=$(ldconfig -p | awk '/libOpenCL.so.1 /{print $NF; exit}')
cc $CFLAGS $CLINC -o "$B/gpu_alloc" tests/gpu/gpu_alloc.c "$OCL" || exit 1
mkdir -p "$B/icd"
echo libnvidia-opencl.so.1 > "$B/icd/nvidia.icd"
status=0
check() {  # name expected-exit command...
	local name=$1 want=$2; shift 2
	"$B/usage_init" "$B/p.mem" $((256 << 20)) 600 || exit 1
	out=$(KXGPU_USAGE="$B/p.mem" LD_PRELOAD="$B/libkxgpu.so" "$@" 2>&1)
	rc=$?
	if [ "$rc" = "$want" ] && grep -q '^ok 3$' <<<"$out" && grep -q '^refused 4' <<<"$out"; then
		echo "PASS $name: $(grep refused <<<"$out")"
	else
		echo "FAIL $name (exit $rc):"; echo "$out" | tail -5; status=1
	fi
	rm -f "$B/p.mem"
	# without the partition the same program gets all five
	out=$("$@" 2>&1)
	grep -q '^ok 4$' <<<"$out" || { echo "FAIL $name unlimited: $out" | tail -3; status=1; }
}
check "NVIDIA OpenCL clCreateBuffer" 3 env OCL_ICD_VENDORS="$B/icd" "$B/gpu_alloc" 64 5
check "NVIDIA OpenCL clSVMAlloc" 3 env OCL_ICD_VENDORS="$B/icd" "$B/gpu_alloc" --svm 64 5
check "CUDA cuMemAlloc_v2 via dlsym" 3 "$B/cuda_alloc" 64 5
check "CUDA cuMemAlloc via cuGetProcAddress" 3 "$B/cuda_alloc" --proc 64 5
exit $status
