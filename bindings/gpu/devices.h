/*
 * devices.h - OpenCL devices of every platform, through the ICD loader.
 *
 * The loader (libOpenCL.so.1) is opened with dlopen on first use, so kxrun
 * neither links it nor pays for it unless devices are probed: create, list,
 * release and available use the facts cached in the ledger instead.
 */
#ifndef KX_GPU_DEVICES_H
#define KX_GPU_DEVICES_H

#include "ledger.h"

/* Fills out[] with up to max devices, numbered across platforms in loader
 * order.  Returns the count (>= 0), or -1 with a message in err when there is
 * no loader or no platform ("no OpenCL platform found ..."). */
int kxgpu_probe_devices(struct kxgpu_device *out, uint32_t max, char *err,
                        size_t errlen);

#endif /* KX_GPU_DEVICES_H */
