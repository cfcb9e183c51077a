#!/usr/bin/env python3
"""A model of Tracekit's collector: poll /proc every INTERVAL seconds, keep
the descendants of ROOT, read stat and statm of each.  Prints the pids seen
(one per line) when ROOT is gone, and its own CPU seconds on stderr.
usage: tracekit_poll.py INTERVAL ROOT_PID"""
import os, sys, time

interval, root = float(sys.argv[1]), int(sys.argv[2])
seen = {}
def ppid_map():
    m = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            rest = s[s.rindex(")") + 2:].split()
            m[int(d)] = (int(rest[1]), s[s.index("(") + 1:s.rindex(")")])
        except (OSError, ValueError):
            pass
    return m
while os.path.exists(f"/proc/{root}"):
    m = ppid_map()
    tree = {root}
    changed = True
    while changed:
        changed = False
        for pid, (pp, _) in m.items():
            if pp in tree and pid not in tree:
                tree.add(pid); changed = True
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as f:
                f.read()
            seen.setdefault(pid, m.get(pid, (0, "?"))[1])
        except OSError:
            pass
    time.sleep(interval)
for pid, comm in seen.items():
    print(pid, comm)
t = os.times()
print(f"{t.user + t.system:.3f}", file=sys.stderr)
