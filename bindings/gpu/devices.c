/*
 * devices.c - OpenCL device facts through the ICD loader, opened lazily.
 */
#define CL_TARGET_OPENCL_VERSION 300
#include "devices.h"

#include <CL/cl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

typedef cl_int (*get_platforms_fn)(cl_uint, cl_platform_id *, cl_uint *);
typedef cl_int (*get_platform_info_fn)(cl_platform_id, cl_platform_info,
                                       size_t, void *, size_t *);
typedef cl_int (*get_devices_fn)(cl_platform_id, cl_device_type, cl_uint,
                                 cl_device_id *, cl_uint *);
typedef cl_int (*get_device_info_fn)(cl_device_id, cl_device_info, size_t,
                                     void *, size_t *);

static const char *type_name(cl_device_type t)
{
	if (t & CL_DEVICE_TYPE_GPU)
		return "GPU";
	if (t & CL_DEVICE_TYPE_CPU)
		return "CPU";
	if (t & CL_DEVICE_TYPE_ACCELERATOR)
		return "Accelerator";
	if (t & CL_DEVICE_TYPE_CUSTOM)
		return "Custom";
	return "Other";
}

static void info_string(get_device_info_fn f, cl_device_id d,
                        cl_device_info what, char *buf, size_t len)
{
	char tmp[1024] = "";

	/* the whole string, then cut: a short buffer is an error in OpenCL */
	if (f(d, what, sizeof tmp - 1, tmp, NULL) != CL_SUCCESS)
		snprintf(tmp, sizeof tmp, "unknown");
	tmp[sizeof tmp - 1] = 0;
	snprintf(buf, len, "%s", tmp);
}

int kxgpu_probe_devices(struct kxgpu_device *out, uint32_t max, char *err,
                        size_t errlen)
{
	static void *lib;
	get_platforms_fn get_platforms;
	get_platform_info_fn get_platform_info;
	get_devices_fn get_devices;
	get_device_info_fn get_device_info;
	cl_platform_id plats[16];
	cl_uint nplat = 0;
	uint32_t n = 0;
	cl_int rc;

	if (!lib)
		lib = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(err, errlen, "no OpenCL platform found: cannot load the "
		         "OpenCL ICD loader (libOpenCL.so.1): %s", dlerror());
		return -1;
	}
	get_platforms = (get_platforms_fn)dlsym(lib, "clGetPlatformIDs");
	get_platform_info = (get_platform_info_fn)dlsym(lib, "clGetPlatformInfo");
	get_devices = (get_devices_fn)dlsym(lib, "clGetDeviceIDs");
	get_device_info = (get_device_info_fn)dlsym(lib, "clGetDeviceInfo");
	if (!get_platforms || !get_platform_info || !get_devices ||
	    !get_device_info) {
		snprintf(err, errlen, "no OpenCL platform found: the OpenCL ICD "
		         "loader lacks clGetPlatformIDs or clGetDeviceIDs");
		return -1;
	}
	rc = get_platforms(16, plats, &nplat);
	if (rc != CL_SUCCESS || nplat == 0) {
		snprintf(err, errlen, "no OpenCL platform found (clGetPlatformIDs: "
		         "%d); check the ICD files in /etc/OpenCL/vendors or "
		         "OCL_ICD_VENDORS", rc);
		return -1;
	}
	if (nplat > 16)
		nplat = 16;
	for (cl_uint p = 0; p < nplat && n < max; p++) {
		cl_device_id devs[KXGPU_MAX_DEVICES];
		cl_uint ndev = 0;
		char pname[64] = "";

		get_platform_info(plats[p], CL_PLATFORM_NAME, sizeof pname, pname,
		                  NULL);
		pname[sizeof pname - 1] = 0;
		if (get_devices(plats[p], CL_DEVICE_TYPE_ALL, KXGPU_MAX_DEVICES,
		                devs, &ndev) != CL_SUCCESS)
			continue;  /* a platform without devices */
		if (ndev > KXGPU_MAX_DEVICES)
			ndev = KXGPU_MAX_DEVICES;
		for (cl_uint i = 0; i < ndev && n < max; i++) {
			struct kxgpu_device *d = &out[n];
			cl_device_type t = 0;
			cl_ulong mem = 0;

			memset(d, 0, sizeof *d);
			d->index = n;
			info_string(get_device_info, devs[i], CL_DEVICE_NAME,
			            d->name, sizeof d->name);
			info_string(get_device_info, devs[i], CL_DEVICE_VENDOR,
			            d->vendor, sizeof d->vendor);
			info_string(get_device_info, devs[i], CL_DEVICE_VERSION,
			            d->version, sizeof d->version);
			/* "OpenCL 3.0 PoCL 3.1+debian ..." -> "OpenCL 3.0" */
			char *sp = strchr(d->version, ' ');
			if (sp && (sp = strchr(sp + 1, ' ')))
				*sp = 0;
			get_device_info(devs[i], CL_DEVICE_TYPE, sizeof t, &t, NULL);
			get_device_info(devs[i], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem,
			                &mem, NULL);
			snprintf(d->type, sizeof d->type, "%s", type_name(t));
			snprintf(d->platform, sizeof d->platform, "%.23s", pname);
			d->memory = mem;
			n++;
		}
	}
	return (int)n;
}
