/*
 * preload.c - libkxgpu.so: device memory limits for programs run in a
 * partition (LD_PRELOAD, set by partition:exec and `kxrun gpu run`).
 *
 * Every allocation is charged to the partition's shared count (usage.h, the
 * file named by $KXGPU_USAGE) at creation, with the size requested: NVIDIA
 * allocates lazily, so counting at first use would let a program
 * over-commit.  A request past the limit, or after expiry, gets the API's own
 * out-of-memory error.  Counted:
 *
 *   OpenCL  clCreateBuffer, clCreateBufferWithProperties (requested size),
 *           clCreateImage, clCreateImage2D/3D, clCreateImageWithProperties
 *           (CL_MEM_SIZE of the new image), all given back by a destructor
 *           callback when the object is really freed (reference count 0);
 *           clSVMAlloc / clSVMFree / clEnqueueSVMFree.
 *   CUDA    cuMemAlloc_v2, cuMemAllocPitch_v2, cuMemAllocManaged,
 *           cuMemFree_v2, also when obtained through cuGetProcAddress(_v2)
 *           or dlsym on a libcuda/libOpenCL handle (the CUDA runtime does
 *           both), since dlsym is interposed too.
 *
 * Not counted (limits of interposition): programs that link libcuda or
 * libOpenCL statically or issue ioctls themselves, the CUDA virtual memory
 * API (cuMemCreate), cuMemAllocAsync pools, and kernels' own scratch.
 */
#define CL_TARGET_OPENCL_VERSION 300
#define CL_USE_DEPRECATED_OPENCL_1_1_APIS
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usage.h"

#define EXPORT __attribute__((visibility("default")))

/* ---- the partition's count ---------------------------------------------- */

static kxgpu_usage usage;
static int usage_state;  /* 0 not yet, 1 attached, 2 no partition, 3 broken */
static pthread_mutex_t usage_lock = PTHREAD_MUTEX_INITIALIZER;

/* 1: not in a partition, allocate freely; 0: attached; -1: refuse all. */
static int attach(void)
{
	int st = __atomic_load_n(&usage_state, __ATOMIC_ACQUIRE);
	char err[256];
	const char *path;

	if (st)
		return st == 1 ? 0 : st == 2 ? 1 : -1;
	pthread_mutex_lock(&usage_lock);
	if (!usage_state) {
		path = getenv("KXGPU_USAGE");
		if (!path || !*path) {
			st = 2;
		} else if (kxgpu_usage_attach(&usage, path, err, sizeof err) != 0) {
			fprintf(stderr, "libkxgpu: %s: refusing device memory "
			        "allocations\n", err);
			st = 3;
		} else {
			st = 1;
		}
		__atomic_store_n(&usage_state, st, __ATOMIC_RELEASE);
	}
	st = usage_state;
	pthread_mutex_unlock(&usage_lock);
	return st == 1 ? 0 : st == 2 ? 1 : -1;
}

/* 1 granted, 0 refused; pass-through outside a partition. */
static int charge(uint64_t bytes)
{
	int a = attach();

	if (a == 1)
		return 1;
	return a == 0 && kxgpu_usage_charge(&usage, bytes) == 0;
}

static void uncharge(uint64_t bytes)
{
	if (attach() == 0)
		kxgpu_usage_uncharge(&usage, bytes);
}

/* ---- pointer -> size, for SVM and CUDA frees ----------------------------- */

#define NBUCKETS 4096
struct node { uintptr_t key; uint64_t size; struct node *next; };
static struct node *buckets[NBUCKETS];
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t bucket(uintptr_t k)
{
	return (size_t)((k >> 6) * 0x9e3779b97f4a7c15ull >> 52) % NBUCKETS;
}

static void map_put(uintptr_t key, uint64_t size)
{
	struct node *n = malloc(sizeof *n);

	if (!n)
		return;  /* the size is then never given back: errs on the safe side */
	n->key = key;
	n->size = size;
	pthread_mutex_lock(&map_lock);
	n->next = buckets[bucket(key)];
	buckets[bucket(key)] = n;
	pthread_mutex_unlock(&map_lock);
}

/* Removes key; returns its size, 0 when unknown (not ours). */
static uint64_t map_take(uintptr_t key)
{
	struct node **p, *n;
	uint64_t size = 0;

	pthread_mutex_lock(&map_lock);
	for (p = &buckets[bucket(key)]; (n = *p); p = &n->next) {
		if (n->key == key) {
			*p = n->next;
			size = n->size;
			free(n);
			break;
		}
	}
	pthread_mutex_unlock(&map_lock);
	return size;
}

/* ---- finding the real functions ----------------------------------------- */

typedef void *(*dlsym_fn)(void *, const char *);

static dlsym_fn real_dlsym_fn(void)
{
	static dlsym_fn f;

	if (!f) {
		f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
		if (!f)
			f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
	}
	return f;
}

enum {
	F_clCreateBuffer, F_clCreateBufferWithProperties, F_clCreateImage,
	F_clCreateImage2D, F_clCreateImage3D, F_clCreateImageWithProperties,
	F_clSVMAlloc, F_clSVMFree, F_clEnqueueSVMFree,
	F_cuMemAlloc_v2, F_cuMemAllocPitch_v2, F_cuMemAllocManaged,
	F_cuMemFree_v2, F_cuGetProcAddress, F_cuGetProcAddress_v2, NFUNCS
};

static const char *const names[NFUNCS] = {
	"clCreateBuffer", "clCreateBufferWithProperties", "clCreateImage",
	"clCreateImage2D", "clCreateImage3D", "clCreateImageWithProperties",
	"clSVMAlloc", "clSVMFree", "clEnqueueSVMFree",
	"cuMemAlloc_v2", "cuMemAllocPitch_v2", "cuMemAllocManaged",
	"cuMemFree_v2", "cuGetProcAddress", "cuGetProcAddress_v2",
};

static void *real[NFUNCS];

static void *get_real(int i)
{
	void *f = __atomic_load_n(&real[i], __ATOMIC_ACQUIRE);

	if (!f) {
		f = real_dlsym_fn()(RTLD_NEXT, names[i]);
		if (f)
			__atomic_store_n(&real[i], f, __ATOMIC_RELEASE);
	}
	return f;
}

/* Remembers the library's own function found some other way (dlsym on a
 * handle, cuGetProcAddress) and hands out the wrapper instead. */
static void *wrap(int i, void *found);

/* ---- OpenCL ------------------------------------------------------------- */

static void CL_CALLBACK mem_freed(cl_mem m, void *size)
{
	(void)m;
	uncharge((uint64_t)(uintptr_t)size);
}

typedef cl_int (*set_dtor_fn)(cl_mem, void (CL_CALLBACK *)(cl_mem, void *),
                              void *);
typedef cl_int (*mem_info_fn)(cl_mem, cl_mem_info, size_t, void *, size_t *);
typedef cl_int (*release_fn)(cl_mem);

/* Gives the size back when the object is freed; if that cannot be arranged
 * the object is released and creation fails (never an uncounted object). */
static cl_mem track(cl_mem m, uint64_t size, cl_int *errcode_ret)
{
	static set_dtor_fn set_dtor;
	static release_fn release;

	if (!set_dtor) {
		release = (release_fn)real_dlsym_fn()(RTLD_NEXT, "clReleaseMemObject");
		set_dtor = (set_dtor_fn)real_dlsym_fn()(
			RTLD_NEXT, "clSetMemObjectDestructorCallback");
	}
	if (set_dtor && set_dtor(m, mem_freed, (void *)(uintptr_t)size) ==
	    CL_SUCCESS)
		return m;
	if (release)
		release(m);
	uncharge(size);
	if (errcode_ret)
		*errcode_ret = CL_OUT_OF_RESOURCES;
	return NULL;
}

typedef cl_mem (*create_buffer_fn)(cl_context, cl_mem_flags, size_t, void *,
                                   cl_int *);

EXPORT cl_mem clCreateBuffer(cl_context ctx, cl_mem_flags flags, size_t size,
                             void *host_ptr, cl_int *errcode_ret)
{
	create_buffer_fn f = (create_buffer_fn)get_real(F_clCreateBuffer);
	cl_mem m;

	if (!f) {
		if (errcode_ret)
			*errcode_ret = CL_OUT_OF_HOST_MEMORY;
		return NULL;
	}
	if (size == 0 || attach() == 1)
		return f(ctx, flags, size, host_ptr, errcode_ret);
	if (!charge(size)) {
		if (errcode_ret)
			*errcode_ret = CL_MEM_OBJECT_ALLOCATION_FAILURE;
		return NULL;
	}
	m = f(ctx, flags, size, host_ptr, errcode_ret);
	if (!m) {
		uncharge(size);
		return NULL;
	}
	return track(m, size, errcode_ret);
}

typedef cl_mem (*create_buffer_props_fn)(cl_context, const cl_mem_properties *,
                                         cl_mem_flags, size_t, void *,
                                         cl_int *);

EXPORT cl_mem clCreateBufferWithProperties(cl_context ctx,
                                           const cl_mem_properties *props,
                                           cl_mem_flags flags, size_t size,
                                           void *host_ptr, cl_int *errcode_ret)
{
	create_buffer_props_fn f =
		(create_buffer_props_fn)get_real(F_clCreateBufferWithProperties);
	cl_mem m;

	if (!f) {
		if (errcode_ret)
			*errcode_ret = CL_OUT_OF_HOST_MEMORY;
		return NULL;
	}
	if (size == 0 || attach() == 1)
		return f(ctx, props, flags, size, host_ptr, errcode_ret);
	if (!charge(size)) {
		if (errcode_ret)
			*errcode_ret = CL_MEM_OBJECT_ALLOCATION_FAILURE;
		return NULL;
	}
	m = f(ctx, props, flags, size, host_ptr, errcode_ret);
	if (!m) {
		uncharge(size);
		return NULL;
	}
	return track(m, size, errcode_ret);
}

/* Images: their size depends on format, pitch and padding; ask the driver
 * (before any use, so nothing was allocated yet on lazy drivers). */
static cl_mem charge_image(cl_mem m, cl_int *errcode_ret)
{
	static mem_info_fn info;
	static release_fn release;
	size_t size = 0;

	if (!m || attach() == 1)
		return m;
	if (!info) {
		release = (release_fn)real_dlsym_fn()(RTLD_NEXT, "clReleaseMemObject");
		info = (mem_info_fn)real_dlsym_fn()(RTLD_NEXT, "clGetMemObjectInfo");
	}
	if (!info || info(m, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS ||
	    !charge(size)) {
		if (release)
			release(m);
		if (errcode_ret)
			*errcode_ret = CL_MEM_OBJECT_ALLOCATION_FAILURE;
		return NULL;
	}
	return track(m, size, errcode_ret);
}

typedef cl_mem (*create_image_fn)(cl_context, cl_mem_flags,
                                  const cl_image_format *,
                                  const cl_image_desc *, void *, cl_int *);

EXPORT cl_mem clCreateImage(cl_context ctx, cl_mem_flags flags,
                            const cl_image_format *fmt,
                            const cl_image_desc *desc, void *host_ptr,
                            cl_int *errcode_ret)
{
	create_image_fn f = (create_image_fn)get_real(F_clCreateImage);

	if (!f) {
		if (errcode_ret)
			*errcode_ret = CL_OUT_OF_HOST_MEMORY;
		return NULL;
	}
	return charge_image(f(ctx, flags, fmt, desc, host_ptr, errcode_ret),
	                    errcode_ret);
}

typedef cl_mem (*create_image2d_fn)(cl_context, cl_mem_flags,
                                    const cl_image_format *, size_t, size_t,
                                    size_t, void *, cl_int *);

EXPORT cl_mem clCreateImage2D(cl_context ctx, cl_mem_flags flags,
                              const cl_image_format *fmt, size_t w, size_t h,
                              size_t pitch, void *host_ptr, cl_int *errcode_ret)
{
	create_image2d_fn f = (create_image2d_fn)get_real(F_clCreateImage2D);

	if (!f) {
		if (errcode_ret)
			*errcode_ret = CL_OUT_OF_HOST_MEMORY;
		return NULL;
	}
	return charge_image(f(ctx, flags, fmt, w, h, pitch, host_ptr,
	                      errcode_ret), errcode_ret);
}

typedef cl_mem (*create_image3d_fn)(cl_context, cl_mem_flags,
                                    const cl_image_format *, size_t, size_t,
                                    size_t, size_t, size_t, void *, cl_int *);

EXPORT cl_mem clCreateImage3D(cl_context ctx, cl_mem_flags flags,
                              const cl_image_format *fmt, size_t w, size_t h,
                              size_t d, size_t rpitch, size_t spitch,
                              void *host_ptr, cl_int *errcode_ret)
{
	create_image3d_fn f = (create_image3d_fn)get_real(F_clCreateImage3D);

	if (!f) {
		if (errcode_ret)
			*errcode_ret = CL_OUT_OF_HOST_MEMORY;
		return NULL;
	}
	return charge_image(f(ctx, flags, fmt, w, h, d, rpitch, spitch, host_ptr,
	                      errcode_ret), errcode_ret);
}

typedef cl_mem (*create_image_props_fn)(cl_context, const cl_mem_properties *,
                                        cl_mem_flags, const cl_image_format *,
                                        const cl_image_desc *, void *,
                                        cl_int *);

EXPORT cl_mem clCreateImageWithProperties(cl_context ctx,
                                          const cl_mem_properties *props,
                                          cl_mem_flags flags,
                                          const cl_image_format *fmt,
                                          const cl_image_desc *desc,
                                          void *host_ptr, cl_int *errcode_ret)
{
	create_image_props_fn f =
		(create_image_props_fn)get_real(F_clCreateImageWithProperties);

	if (!f) {
		if (errcode_ret)
			*errcode_ret = CL_OUT_OF_HOST_MEMORY;
		return NULL;
	}
	return charge_image(f(ctx, props, flags, fmt, desc, host_ptr,
	                      errcode_ret), errcode_ret);
}

typedef void *(*svm_alloc_fn)(cl_context, cl_svm_mem_flags, size_t, cl_uint);
typedef void (*svm_free_fn)(cl_context, void *);

EXPORT void *clSVMAlloc(cl_context ctx, cl_svm_mem_flags flags, size_t size,
                        cl_uint alignment)
{
	svm_alloc_fn f = (svm_alloc_fn)get_real(F_clSVMAlloc);
	void *p;

	if (!f)
		return NULL;
	if (size == 0 || attach() == 1)
		return f(ctx, flags, size, alignment);
	if (!charge(size))
		return NULL;
	p = f(ctx, flags, size, alignment);
	if (!p)
		uncharge(size);
	else
		map_put((uintptr_t)p, size);
	return p;
}

EXPORT void clSVMFree(cl_context ctx, void *p)
{
	svm_free_fn f = (svm_free_fn)get_real(F_clSVMFree);
	uint64_t size = p ? map_take((uintptr_t)p) : 0;

	if (f)
		f(ctx, p);
	if (size)
		uncharge(size);
}

typedef cl_int (*enqueue_svm_free_fn)(cl_command_queue, cl_uint, void *[],
                                      void (CL_CALLBACK *)(cl_command_queue,
                                                           cl_uint, void *[],
                                                           void *),
                                      void *, cl_uint, const cl_event *,
                                      cl_event *);

EXPORT cl_int clEnqueueSVMFree(cl_command_queue q, cl_uint n, void *ptrs[],
                               void (CL_CALLBACK *cb)(cl_command_queue,
                                                      cl_uint, void *[],
                                                      void *),
                               void *ud, cl_uint nwait, const cl_event *wait,
                               cl_event *ev)
{
	enqueue_svm_free_fn f = (enqueue_svm_free_fn)get_real(F_clEnqueueSVMFree);
	cl_int rc;

	if (!f)
		return CL_INVALID_OPERATION;
	rc = f(q, n, ptrs, cb, ud, nwait, wait, ev);
	if (rc == CL_SUCCESS)
		for (cl_uint i = 0; i < n; i++) {
			uint64_t size = ptrs[i] ? map_take((uintptr_t)ptrs[i]) : 0;
			if (size)
				uncharge(size);
		}
	return rc;
}

/* ---- CUDA driver API (declared here: no CUDA headers needed) ------------ */

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
#define CUDA_SUCCESS 0
#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NOT_FOUND 500

typedef CUresult (*cu_alloc_fn)(CUdeviceptr *, size_t);
typedef CUresult (*cu_alloc_pitch_fn)(CUdeviceptr *, size_t *, size_t, size_t,
                                      unsigned int);
typedef CUresult (*cu_alloc_managed_fn)(CUdeviceptr *, size_t, unsigned int);
typedef CUresult (*cu_free_fn)(CUdeviceptr);
typedef CUresult (*cu_get_proc_fn)(const char *, void **, int,
                                   unsigned long long);
typedef CUresult (*cu_get_proc2_fn)(const char *, void **, int,
                                    unsigned long long, int *);

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size)
{
	cu_alloc_fn f = (cu_alloc_fn)get_real(F_cuMemAlloc_v2);
	CUresult rc;

	if (!f)
		return CUDA_ERROR_NOT_FOUND;
	if (size == 0 || attach() == 1)
		return f(dptr, size);
	if (!charge(size))
		return CUDA_ERROR_OUT_OF_MEMORY;
	rc = f(dptr, size);
	if (rc != CUDA_SUCCESS)
		uncharge(size);
	else
		map_put((uintptr_t)*dptr, size);
	return rc;
}

EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t size,
                                  unsigned int flags)
{
	cu_alloc_managed_fn f = (cu_alloc_managed_fn)get_real(F_cuMemAllocManaged);
	CUresult rc;

	if (!f)
		return CUDA_ERROR_NOT_FOUND;
	if (size == 0 || attach() == 1)
		return f(dptr, size, flags);
	if (!charge(size))
		return CUDA_ERROR_OUT_OF_MEMORY;
	rc = f(dptr, size, flags);
	if (rc != CUDA_SUCCESS)
		uncharge(size);
	else
		map_put((uintptr_t)*dptr, size);
	return rc;
}

EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch,
                                   size_t width, size_t height,
                                   unsigned int elem)
{
	cu_alloc_pitch_fn f = (cu_alloc_pitch_fn)get_real(F_cuMemAllocPitch_v2);
	cu_free_fn fr = (cu_free_fn)get_real(F_cuMemFree_v2);
	uint64_t want = (uint64_t)width * height, got;
	CUresult rc;

	if (!f)
		return CUDA_ERROR_NOT_FOUND;
	if (want == 0 || attach() == 1)
		return f(dptr, pitch, width, height, elem);
	if (!charge(want))
		return CUDA_ERROR_OUT_OF_MEMORY;
	rc = f(dptr, pitch, width, height, elem);
	if (rc != CUDA_SUCCESS) {
		uncharge(want);
		return rc;
	}
	got = (uint64_t)*pitch * height;  /* padding counts too */
	if (got > want && !charge(got - want)) {
		if (fr)
			fr(*dptr);
		uncharge(want);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	map_put((uintptr_t)*dptr, got > want ? got : want);
	return rc;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr)
{
	cu_free_fn f = (cu_free_fn)get_real(F_cuMemFree_v2);
	CUresult rc;

	if (!f)
		return CUDA_ERROR_NOT_FOUND;
	rc = f(dptr);
	if (rc == CUDA_SUCCESS && dptr) {
		uint64_t size = map_take((uintptr_t)dptr);
		if (size)
			uncharge(size);
	}
	return rc;
}

/* cuGetProcAddress names functions without the _v2 suffix; the version asks
 * for the ABI (cuMemAlloc is _v2 from CUDA 3.2 on). */
static void *proc_wrapper(const char *sym, int version, void *found)
{
	if (!found)
		return found;
	if (version >= 3020 && strcmp(sym, "cuMemAlloc") == 0)
		return wrap(F_cuMemAlloc_v2, found);
	if (version >= 3020 && strcmp(sym, "cuMemAllocPitch") == 0)
		return wrap(F_cuMemAllocPitch_v2, found);
	if (version >= 3020 && strcmp(sym, "cuMemFree") == 0)
		return wrap(F_cuMemFree_v2, found);
	if (strcmp(sym, "cuMemAllocManaged") == 0)
		return wrap(F_cuMemAllocManaged, found);
	if (strcmp(sym, "cuGetProcAddress") == 0)
		return wrap(version >= 12000 ? F_cuGetProcAddress_v2 :
		            F_cuGetProcAddress, found);
	return found;
}

EXPORT CUresult cuGetProcAddress(const char *sym, void **pfn, int version,
                                 unsigned long long flags)
{
	cu_get_proc_fn f = (cu_get_proc_fn)get_real(F_cuGetProcAddress);
	CUresult rc;

	if (!f)
		return CUDA_ERROR_NOT_FOUND;
	rc = f(sym, pfn, version, flags);
	if (rc == CUDA_SUCCESS && pfn && sym)
		*pfn = proc_wrapper(sym, version, *pfn);
	return rc;
}

EXPORT CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int version,
                                    unsigned long long flags, int *status)
{
	cu_get_proc2_fn f = (cu_get_proc2_fn)get_real(F_cuGetProcAddress_v2);
	CUresult rc;

	if (!f)
		return CUDA_ERROR_NOT_FOUND;
	rc = f(sym, pfn, version, flags, status);
	if (rc == CUDA_SUCCESS && pfn && sym)
		*pfn = proc_wrapper(sym, version, *pfn);
	return rc;
}

/* ---- dlsym: programs that dlopen libcuda / libOpenCL themselves --------- */

static void *const wrapper_table[NFUNCS] = {
	(void *)clCreateBuffer, (void *)clCreateBufferWithProperties,
	(void *)clCreateImage, (void *)clCreateImage2D, (void *)clCreateImage3D,
	(void *)clCreateImageWithProperties, (void *)clSVMAlloc,
	(void *)clSVMFree, (void *)clEnqueueSVMFree, (void *)cuMemAlloc_v2,
	(void *)cuMemAllocPitch_v2, (void *)cuMemAllocManaged,
	(void *)cuMemFree_v2, (void *)cuGetProcAddress,
	(void *)cuGetProcAddress_v2,
};

static void *wrap(int i, void *found)
{
	void *none = NULL;

	if (found == wrapper_table[i])
		return found;
	/* the first library function seen is the one the wrapper calls */
	__atomic_compare_exchange_n(&real[i], &none, found, 0, __ATOMIC_ACQ_REL,
	                            __ATOMIC_ACQUIRE);
	return wrapper_table[i];
}

EXPORT void *dlsym(void *handle, const char *sym)
{
	dlsym_fn f = real_dlsym_fn();
	void *found;

	if (!f)
		return NULL;
	if (handle == RTLD_NEXT)  /* RTLD_NEXT from here would mean us */
		return f(RTLD_NEXT, sym);
	found = f(handle, sym);
	if (!found || (sym[0] != 'c' || (sym[1] != 'l' && sym[1] != 'u')))
		return found;
	for (int i = 0; i < NFUNCS; i++)
		if (strcmp(sym, names[i]) == 0)
			return handle == RTLD_DEFAULT ? found : wrap(i, found);
	return found;
}
