#!/usr/bin/env python3
"""Log lines per minute out of file descriptors (issue 9, hole 11a): tern vs nats-server.

Each server runs with a small RLIMIT_NOFILE and logs to a file (`-l`). Clients connect
until one is not accepted (no INFO), so every descriptor is taken; then, for the measured
window, new connections keep knocking (`--rate` per second, kept open). The lines the
server logged about failed accepts during the window are counted and scaled to a minute.

    perf/fd_log_flood.py [--tern PATH] [--nats-server PATH] [--seconds 60] [--rate 10]

Any number of `--tern` binaries may be given (e.g. an old and a new build). Python 3
standard library only; loopback only.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accept_error_lines(path: str) -> int:
    try:
        with open(path, errors="replace") as f:
            return sum("too many open files" in line.lower() for line in f)
    except FileNotFoundError:
        return 0


def wait_accepting(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def got_info(s: socket.socket, wait: float) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(4096).startswith(b"INFO")
    except OSError:
        return False


def run(binary: str, nofile: int, seconds: float, rate: float) -> tuple[int, int]:
    """Returns (accept error lines in the window, knocks in the window)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="fdflood-", suffix=".log", delete=False).name

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-l", log],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=limit,
    )
    held: list[socket.socket] = []
    try:
        wait_accepting(port, proc)
        while True:
            s = socket.create_connection(("127.0.0.1", port))
            held.append(s)
            if not got_info(s, 0.5):
                break
            if len(held) > nofile + 50:
                raise SystemExit("never ran out of descriptors")
        before = accept_error_lines(log)
        knocks = 0
        start = time.time()
        while time.time() < start + seconds:
            held.append(socket.create_connection(("127.0.0.1", port)))
            knocks += 1
            time.sleep(1.0 / rate)
        return accept_error_lines(log) - before, knocks
    finally:
        for s in held:
            s.close()
        proc.kill()
        proc.wait()
        os.unlink(log)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tern", action="append", default=[])
    ap.add_argument("--nats-server", default=shutil.which("nats-server") or "/usr/sbin/nats-server")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=10.0, help="new connections per second")
    ap.add_argument("--nofile", type=int, default=64, help="the server's RLIMIT_NOFILE")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binaries = args.tern or ["target/release/tern"]
    if args.nats_server and os.path.exists(args.nats_server):
        binaries.append(args.nats_server)
    print(f"RLIMIT_NOFILE {args.nofile}, {args.rate:g} new connections/s for {args.seconds:g} s")
    print(f"{'server':<50} {'lines':>6} {'lines/min':>10} {'knocks':>7}")
    for b in binaries:
        lines, knocks = run(b, args.nofile, args.seconds, args.rate)
        per_min = lines * 60.0 / args.seconds
        print(f"{b:<50} {lines:>6} {per_min:>10.1f} {knocks:>7}")


if __name__ == "__main__":
    main()
