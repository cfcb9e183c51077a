// SPDX-License-Identifier: GPL-2.0
/*
 * kxvt_dev.c - /dev/kxvt: the experiment file and its ioctls (kxvt.h).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/uaccess.h>

#include "kxvt.h"

static int kxvt_open(struct inode *inode, struct file *file)
{
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	return 0;
}

static long kxvt_info(void __user *arg)
{
	struct kxvt_info info = {
		.api_version = KXVT_API_VERSION,
		.max_members = KXVT_MAX_MEMBERS,
		.max_shares = KXVT_MAX_SHARES,
	};

	return copy_to_user(arg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long kxvt_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case KXVT_IOC_INFO:
		return kxvt_info((void __user *)arg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations kxvt_fops = {
	.owner = THIS_MODULE,
	.open = kxvt_open,
	.unlocked_ioctl = kxvt_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice kxvt_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kxvt",
	.fops = &kxvt_fops,
	.mode = 0600,
};

static int __init kxvt_init(void)
{
	int err = misc_register(&kxvt_misc);

	if (err)
		pr_err("cannot register /dev/kxvt: %d\n", err);
	return err;
}

static void __exit kxvt_exit(void)
{
	misc_deregister(&kxvt_misc);
}

module_init(kxvt_init);
module_exit(kxvt_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kx.vtime kernel backend: virtual time rounds");
