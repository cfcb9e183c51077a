/*
 * kxvt_test.c - drives /dev/kxvt directly for the guest's cases
 * (tests/vm/kxvt_*.sh): kxvt_test info
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kxvt.h"

static int open_dev(void)
{
	int fd = open(KXVT_DEVICE, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: %s\n", KXVT_DEVICE, strerror(errno));
		return -1;
	}
	return fd;
}

static int cmd_info(void)
{
	int fd = open_dev();
	struct kxvt_info info;
	if (fd < 0 || ioctl(fd, KXVT_IOC_INFO, &info) < 0)
		return 1;
	printf("api %u caps %#x max_members %u pmu '%s'\n", info.api_version,
	       info.caps, info.max_members, info.pmu);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "info"))
		return cmd_info();
	fprintf(stderr, "usage: kxvt_test info\n");
	return 2;
}
