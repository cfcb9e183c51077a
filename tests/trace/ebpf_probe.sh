#!/bin/sh
# ebpf_probe.sh: can this host load kx.trace's eBPF program?  Probes the
# features themselves, never kxrun: root, the kernel's BTF, the bpf()
# system call (a two-instruction program loaded and closed).  Exit 0 when
# all are there; else exit 1 with the missing one on stdout.
[ "$(id -u)" = 0 ] || { echo "eBPF needs root (uid $(id -u))"; exit 1; }
[ -e /sys/kernel/btf/vmlinux ] || { echo "eBPF needs a kernel with BTF (no /sys/kernel/btf/vmlinux)"; exit 1; }
python3 - <<'PY' || { echo "the bpf() system call is refused here (no CAP_BPF here: a user namespace, seccomp or lockdown)"; exit 1; }
import ctypes, struct, sys, os
libc = ctypes.CDLL(None, use_errno=True)
# r0 = 0; exit -- a socket filter, the least a kernel with BPF accepts
insns = ctypes.create_string_buffer(struct.pack("<BBhiBBhi", 0xb7, 0, 0, 0, 0x95, 0, 0, 0), 16)
lic = ctypes.create_string_buffer(b"GPL")
attr = struct.pack("<IIQQIIQ", 1, 2, ctypes.addressof(insns), ctypes.addressof(lic), 0, 0, 0) + bytes(88)
buf = ctypes.create_string_buffer(attr, len(attr))
SYS_bpf, BPF_PROG_LOAD = 321, 5   # x86_64
fd = libc.syscall(SYS_bpf, BPF_PROG_LOAD, buf, len(attr))
if fd < 0:
    sys.exit(1)
os.close(fd)
PY
exit 0
