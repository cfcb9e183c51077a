/*
 * cuda_alloc - allocates CUDA device memory through the driver API, for the
 * kx.gpu enforcement check on machines with an NVIDIA driver.
 *
 *   cuda_alloc [--proc] MB COUNT
 *
 * libcuda.so.1 is dlopen'd RTLD_LOCAL and its functions found with dlsym on
 * that handle (as the CUDA runtime does), or with --proc through
 * cuGetProcAddress.  Prints "ok I" per cuMemAlloc that succeeds and
 * "refused I: CUresult N" at the first failure, then frees everything and
 * prints "done N".  Exit 0 if all succeeded, 3 if refused, 1 on set-up
 * errors, 77 without a CUDA driver.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef int (*init_fn)(unsigned);
typedef int (*dev_get_fn)(int *, int);
typedef int (*ctx_create_fn)(void **, unsigned, int);
typedef int (*alloc_fn)(CUdeviceptr *, size_t);
typedef int (*free_fn)(CUdeviceptr);
typedef int (*proc_fn)(const char *, void **, int, unsigned long long, int *);

int main(int argc, char **argv)
{
	int proc = 0, dev, n = 0, rc = 0;
	void *lib, *ctx;
	alloc_fn alloc;
	free_fn fr;

	if (argc > 1 && strcmp(argv[1], "--proc") == 0) {
		proc = 1;
		argv++, argc--;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: cuda_alloc [--proc] MB COUNT\n");
		return 1;
	}
	size_t size = (size_t)atol(argv[1]) << 20;
	int count = atoi(argv[2]);
	CUdeviceptr *ptrs = calloc((size_t)count + 1, sizeof *ptrs);

	setvbuf(stdout, NULL, _IOLBF, 0);
	lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		printf("no CUDA driver: %s\n", dlerror());
		return 77;
	}
	init_fn init = (init_fn)dlsym(lib, "cuInit");
	dev_get_fn dev_get = (dev_get_fn)dlsym(lib, "cuDeviceGet");
	ctx_create_fn ctx_create = (ctx_create_fn)dlsym(lib, "cuCtxCreate_v2");
	if (proc) {
		proc_fn gp = (proc_fn)dlsym(lib, "cuGetProcAddress_v2");
		if (!gp || gp("cuMemAlloc", (void **)&alloc, 12000, 0, NULL) != 0 ||
		    gp("cuMemFree", (void **)&fr, 12000, 0, NULL) != 0) {
			fprintf(stderr, "cuda_alloc: cuGetProcAddress_v2 failed\n");
			return 1;
		}
	} else {
		alloc = (alloc_fn)dlsym(lib, "cuMemAlloc_v2");
		fr = (free_fn)dlsym(lib, "cuMemFree_v2");
	}
	if (!init || !dev_get || !ctx_create || !alloc || !fr ||
	    init(0) != 0 || dev_get(&dev, 0) != 0 || ctx_create(&ctx, 0, dev) != 0) {
		fprintf(stderr, "cuda_alloc: cannot set up a CUDA context\n");
		return 1;
	}
	for (int i = 0; i < count; i++) {
		CUresult r = alloc(&ptrs[i], size);
		if (r != 0) {
			printf("refused %d: CUresult %d\n", i, r);
			rc = 3;
			break;
		}
		printf("ok %d\n", i);
		n++;
	}
	for (int i = 0; i < n; i++)
		fr(ptrs[i]);
	printf("done %d\n", n);
	return rc;
}
