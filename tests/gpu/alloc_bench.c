/*
 * alloc_bench - nanoseconds per clCreateBuffer + clReleaseMemObject pair
 * (4 KiB buffers) on the first OpenCL device, for bench/gpu_ledger.lua: run
 * once plainly and once inside a partition, the difference is what
 * libkxgpu.so adds per allocation.
 *
 *   alloc_bench [N]     prints "ms_opencl_start X" (clGetPlatformIDs +
 *                       clGetDeviceIDs) and "ns_per_alloc X"
 */
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	double best = 1e30;
	cl_platform_id plat;
	cl_device_id dev;
	cl_context ctx;
	cl_int e;

	double t_start = now_ns();
	if (clGetPlatformIDs(1, &plat, NULL) != CL_SUCCESS ||
	    clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, NULL) != CL_SUCCESS) {
		fprintf(stderr, "alloc_bench: no OpenCL device\n");
		return 1;
	}
	printf("ms_opencl_start %.1f\n", (now_ns() - t_start) / 1e6);
	if (!(ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e))) {
		fprintf(stderr, "alloc_bench: no OpenCL device\n");
		return 1;
	}
	for (int round = 0; round < 5; round++) {  /* best of 5: noisy host */
		double t0 = now_ns();
		for (int i = 0; i < n; i++) {
			cl_mem m = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 4096, NULL, &e);
			if (!m) {
				fprintf(stderr, "alloc_bench: clCreateBuffer: %d\n", e);
				return 1;
			}
			clReleaseMemObject(m);
		}
		double per = (now_ns() - t0) / n;
		if (per < best)
			best = per;
	}
	printf("ns_per_alloc %.1f\n", best);
	clReleaseContext(ctx);
	return 0;
}
