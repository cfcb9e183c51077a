/*
 * ocl_probe - does the OpenCL ICD loader list a device?  The kx.gpu tests
 * decide whether to skip with this, never with kxrun itself (a kxrun that
 * crashes on `gpu devices` must fail them, not skip them).
 *
 * Exit 0 and one line per device ("platform: device") when there is one;
 * exit 77 with the reason when the loader lists no platform or no device;
 * exit 1 when the loader cannot even be asked.
 */
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <CL/cl_ext.h>
#include <stdio.h>

int main(void)
{
	cl_platform_id plats[16];
	cl_uint nplat = 0, total = 0;
	cl_int rc = clGetPlatformIDs(16, plats, &nplat);

	if (rc == CL_PLATFORM_NOT_FOUND_KHR || (rc == CL_SUCCESS && nplat == 0)) {
		printf("no OpenCL platform: the ICD loader lists none "
		       "(install pocl-opencl-icd for a CPU device)\n");
		return 77;
	}
	if (rc != CL_SUCCESS) {
		printf("clGetPlatformIDs failed: %d\n", (int)rc);
		return 1;
	}
	for (cl_uint p = 0; p < nplat && p < 16; p++) {
		cl_device_id devs[16];
		cl_uint ndev = 0;
		char pname[128] = "?", dname[128] = "?";

		clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname - 1,
		                  pname, NULL);
		if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 16, devs,
		                   &ndev) != CL_SUCCESS)
			continue;
		for (cl_uint d = 0; d < ndev && d < 16; d++) {
			clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof dname - 1,
			                dname, NULL);
			printf("%s: %s\n", pname, dname);
			total++;
		}
	}
	if (total == 0) {
		printf("no OpenCL device: %u platform(s) but none lists a "
		       "device\n", nplat);
		return 77;
	}
	return 0;
}
