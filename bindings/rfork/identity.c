/*
 * identity.c - what makes a mapped file "the same" on another machine: its
 * GNU build-id when it is an ELF file with one, else its size and mtime.
 */
#include "internal.h"

#include <elf.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int build_id(int fd, const struct stat *st, struct rf_ident *id)
{
	Elf64_Ehdr eh;
	if (pread(fd, &eh, sizeof eh, 0) != sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) ||
	    eh.e_phnum == 0 || eh.e_phnum > 256)
		return -1;
	Elf64_Phdr ph[256];
	size_t phlen = (size_t)eh.e_phnum * sizeof(Elf64_Phdr);
	if (pread(fd, ph, phlen, eh.e_phoff) != (ssize_t)phlen)
		return -1;
	for (int i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type != PT_NOTE || ph[i].p_filesz > 65536 ||
		    ph[i].p_offset + ph[i].p_filesz > (uint64_t)st->st_size)
			continue;
		unsigned char buf[65536];
		if (pread(fd, buf, ph[i].p_filesz, ph[i].p_offset) != (ssize_t)ph[i].p_filesz)
			continue;
		size_t off = 0;
		while (off + sizeof(Elf64_Nhdr) <= ph[i].p_filesz) {
			Elf64_Nhdr nh;
			memcpy(&nh, buf + off, sizeof nh);
			size_t name = off + sizeof nh;
			size_t desc = name + ((nh.n_namesz + 3) & ~3u);
			size_t next = desc + ((nh.n_descsz + 3) & ~3u);
			if (next > ph[i].p_filesz)
				break;
			if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
			    !memcmp(buf + name, "GNU", 4) && nh.n_descsz > 0 &&
			    nh.n_descsz <= sizeof id->id) {
				memcpy(id->id, buf + desc, nh.n_descsz);
				id->idlen = nh.n_descsz;
				return 0;
			}
			off = next;
		}
	}
	return -1;
}

/* Files whose identity is known (rf_ident_remember): one with the same
 * device, inode, size and change time (any write changes it) is the same
 * file, unread. */
static struct known {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec ctime;
	struct rf_ident id;
} known[16];
static int nknown;

static const struct known *lookup(const struct stat *st)
{
	for (int i = 0; i < nknown; i++)
		if (known[i].dev == st->st_dev && known[i].ino == st->st_ino &&
		    known[i].size == st->st_size && known[i].ctime.tv_sec == st->st_ctim.tv_sec &&
		    known[i].ctime.tv_nsec == st->st_ctim.tv_nsec)
			return &known[i];
	return NULL;
}

int rf_file_ident_fd(int fd, struct rf_ident *id)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	const struct known *k = lookup(&st);
	if (k) {
		uint32_t path = id->path;
		*id = k->id;
		id->path = path;
		return 0;
	}
	id->idlen = 0;
	id->regular = S_ISREG(st.st_mode);
	memset(id->id, 0, sizeof id->id);
	id->size = st.st_size;
	id->mtime = st.st_mtim.tv_sec;
	if (S_ISREG(st.st_mode))
		build_id(fd, &st, id);
	return 0;
}

int rf_file_ident(const char *path, struct rf_ident *id)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = rf_file_ident_fd(fd, id);
	close(fd);
	return r;
}

void rf_ident_remember(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return;
	if (nknown < (int)(sizeof known / sizeof known[0]) && fstat(fd, &st) == 0 &&
	    !lookup(&st)) {
		struct known *k = &known[nknown];
		*k = (struct known){st.st_dev, st.st_ino, st.st_size, st.st_ctim, {0}};
		if (rf_file_ident_fd(fd, &k->id) == 0)
			nknown++;
	}
	close(fd);
}
