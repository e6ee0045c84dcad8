#!/usr/bin/env python3
"""Summarise a folded profile (inferno-collapse-perf output) by area: the kernel's TCP send
path, other kernel work, the payload/header copies, tern's own code, other user space.
Usage: perf/profile_summary.py FOLDED"""
import sys, collections

def area(frames):
    leaf = frames[-1]
    names = ";".join(frames)
    if "sendto" in names or "sys_sendto" in names or "tcp_sendmsg" in names:
        return "kernel: TCP send (copy into socket buffers, loopback delivery)"
    if "recvfrom" in names or "tcp_recvmsg" in names:
        return "kernel: TCP receive"
    if any(k in names for k in ("entry_SYSCALL", "asm_", "irq", "softirq", "exc_page_fault")):
        return "kernel: other (syscalls, interrupts, faults)"
    if "memmove" in leaf or "memcpy" in leaf or "append_elements" in leaf:
        return "user: copying payloads and MSG lines into write buffers"
    if leaf.startswith("tern::") or "tern::" in leaf:
        return "user: tern (parse, match, deliver bookkeeping)"
    return "user: other (libc, std)"

total = 0
by = collections.Counter()
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    n = int(n)
    total += n
    by[area(stack.split(";"))] += n
for a, n in by.most_common():
    print(f"| {a} | {100 * n / total:.1f}% |")
