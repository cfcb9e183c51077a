/*
 * gpu_alloc - allocates OpenCL buffers one after another, for the kx.gpu
 * enforcement tests.
 *
 *   gpu_alloc [--svm] MB COUNT [HOLD_S]
 *
 * Creates up to COUNT buffers (or SVM blocks) of MB MiB on the first device,
 * printing "ok I" for each, and "refused I: ERROR" at the first failure,
 * then "pid P" (its process id, for tests that kill it) and "held N".
 * Then holds them HOLD_S seconds (or until SIGTERM, printing "terminated"),
 * releases them, and prints "done N" (N = number allocated).
 * Exit status 0 if all COUNT succeeded, 3 if one was refused, 1 on set-up
 * errors (no platform, no device).
 */
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t terminated;

static void on_term(int sig)
{
	(void)sig;
	terminated = 1;
}

static const char *cl_error(cl_int e)
{
	switch (e) {
	case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
	case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
	case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
	case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
	default: return "other";
	}
}

int main(int argc, char **argv)
{
	int svm = 0, n = 0, refused = 0;
	cl_platform_id plat;
	cl_device_id dev;
	cl_context ctx;
	cl_int e;

	if (argc > 1 && strcmp(argv[1], "--svm") == 0) {
		svm = 1;
		argv++, argc--;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: gpu_alloc [--svm] MB COUNT [HOLD_S]\n");
		return 1;
	}
	size_t size = (size_t)atol(argv[1]) << 20;
	int count = atoi(argv[2]);
	double hold = argc > 3 ? atof(argv[3]) : 0;
	void **bufs = calloc((size_t)count + 1, sizeof *bufs);

	signal(SIGTERM, on_term);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (clGetPlatformIDs(1, &plat, NULL) != CL_SUCCESS ||
	    clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, NULL) != CL_SUCCESS) {
		fprintf(stderr, "gpu_alloc: no OpenCL device\n");
		return 1;
	}
	ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e);
	if (!ctx) {
		fprintf(stderr, "gpu_alloc: clCreateContext: %d\n", e);
		return 1;
	}
	for (int i = 0; i < count; i++) {
		if (svm) {
			bufs[i] = clSVMAlloc(ctx, CL_MEM_READ_WRITE, size, 0);
			e = bufs[i] ? CL_SUCCESS : CL_MEM_OBJECT_ALLOCATION_FAILURE;
		} else {
			bufs[i] = clCreateBuffer(ctx, CL_MEM_READ_WRITE, size, NULL, &e);
		}
		if (!bufs[i]) {
			printf("refused %d: %s\n", i, cl_error(e));
			refused = 1;
			break;
		}
		printf("ok %d\n", i);
		n++;
	}
	printf("pid %d\nheld %d\n", (int)getpid(), n);
	for (double t = 0; t < hold && !terminated; t += 0.01)
		usleep(10000);
	if (terminated)
		printf("terminated\n");
	for (int i = 0; i < n; i++) {
		if (svm)
			clSVMFree(ctx, bufs[i]);
		else
			clReleaseMemObject(bufs[i]);
	}
	clReleaseContext(ctx);
	printf("done %d\n", n);
	return refused ? 3 : 0;
}
