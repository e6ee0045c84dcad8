#!/usr/bin/env python3
"""Hash-flood figure: time to subscribe n subjects that collide in tern's old map hash
(`h = (rotl(h, 23) ^ word) * K`, the same value for every seed) against n random subjects
of the same length, on each server given. A flood-proof hash shows a ratio near 1; the old
one grows as n (each insert compares with every earlier key).

  perf/hashflood.py [-k 12,14] [BIN ...]     (default: TERN_BIN or the release build, and
                                              /usr/sbin/nats-server when present)

Each subject is k 16-byte blocks, each block "aaaaaaaaaaaaaaaa" or "aaaaaaa\\xe1aa!aaaaa":
flipping bit 63 of one word and bit 22 of the next leaves the old hash unchanged, so the
2^k choices share one hash. Python 3 stdlib only; loopback only.
"""

import argparse
import os
import random
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BLOCKS = (b"aaaaaaaaaaaaaaaa", b"aaaaaaa\xe1aa!aaaaa")


def colliding(k):
    return [b"".join(BLOCKS[bits >> i & 1] for i in range(k)) for bits in range(1 << k)]


def random_subjects(k, rng):
    letters = b"abcdefghijklmnopqrstuvwxyz"
    return [bytes(rng.choice(letters) for _ in range(16 * k)) for _ in range(1 << k)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary):
    port = free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 10
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"{binary} did not start")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc ticks: 10 ms)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def subscribe_time(port, subjects, pid, timeout=600):
    """Seconds from the first SUB to the PONG after the last one (one connection), and the
    server CPU seconds spent meanwhile."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    buf = b""
    while b"\r\n" not in buf:
        buf += s.recv(65536)
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
    buf = b""
    while b"PONG\r\n" not in buf:
        buf += s.recv(65536)
    t0, c0 = time.perf_counter(), cpu_seconds(pid)
    batch = []
    for i, subj in enumerate(subjects):
        batch.append(b"SUB " + subj + b" " + str(i + 1).encode() + b"\r\n")
        if len(batch) == 1024:
            s.sendall(b"".join(batch))
            batch = []
    s.sendall(b"".join(batch) + b"PING\r\n")
    buf = b""
    while b"PONG\r\n" not in buf and b"-ERR" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    t, cpu = time.perf_counter() - t0, cpu_seconds(pid) - c0
    s.close()
    if b"PONG\r\n" not in buf:
        sys.exit(f"no PONG after the SUBs: {buf[:200]!r}")
    return t, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="12,14", help="comma-separated k: 2^k subjects of 16*k bytes")
    ap.add_argument("bins", nargs="*")
    a = ap.parse_args()
    bins = a.bins or [os.environ.get("TERN_BIN") or os.path.join(
        ROOT, "target/x86_64-unknown-linux-gnu/release/tern")]
    if not a.bins and os.path.exists("/usr/sbin/nats-server"):
        bins.append("/usr/sbin/nats-server")
    rng = random.Random(1)
    print("| server | subjects | colliding: subscribe ms (server CPU ms) "
          "| random: subscribe ms (server CPU ms) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k in (int(x) for x in a.k.split(",")):
        coll, rand = colliding(k), random_subjects(k, rng)
        for b in bins:
            # A fresh server per set, so neither set finds the other's subjects.
            times = []
            for subjects in (coll, rand):
                proc, port = start(b)
                try:
                    times.append(subscribe_time(port, subjects, proc.pid))
                finally:
                    proc.kill()
                    proc.wait()
            (tc, cc), (tr, cr) = times
            print(f"| {b} | {len(coll):,} x {16 * k} B | {tc * 1e3:,.1f} ({cc * 1e3:,.0f}) "
                  f"| {tr * 1e3:,.1f} ({cr * 1e3:,.0f}) | {tc / tr:.1f} |", flush=True)


if __name__ == "__main__":
    main()
