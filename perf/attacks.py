#!/usr/bin/env python3
"""Hostile-load figures: tern and nats-server side by side (issue 9's closing note).

Reruns the attacks of issue 9 against every server given (tern, the reference nats-server,
and any --server NAME=BIN), on loopback only, with a fresh server per run, and stops by
itself. Each attack is repeated --reps times with the servers alternating; it prints one
table (medians, with the range when there are several repetitions) and, with --out, writes
it as markdown with the date, the machine, its load and the command.

  stall          healthy subscribers' rate with one stalled subscriber (hole 10)
  connz_latency  request/reply latency while monitoring is hammered (hole 9)
  varz_slots     /varz availability while attackers hold every HTTP slot (hole 8)
  fd_log         log lines per minute out of file descriptors (hole 11)
  hashflood      the cost of inserting subjects that collide in tern's old hash (hole 3)

Adding an attack: write `def attack_NAME(b: Binary, a) -> list[Fig]` (its figures in display
order; the first paragraph of its docstring goes into the report) and register it in ATTACKS.
`b.start()` starts a fresh server of that binary; `perf/compare.py`'s helpers are `cmp`.

Python 3.11 standard library only; connz_latency uses perf/bench's tern-bench (`make attacks`
builds it and tern, then writes perf/ATTACKS.md). On 2 cores any other load is in the figures:
run on a quiet machine, and read ratios rather than absolute numbers.

  python3 perf/attacks.py                                  # everything, 3 repetitions
  python3 perf/attacks.py --attacks stall,fd_log --reps 1
  python3 perf/attacks.py --attacks hashflood --server old=/tmp/tern-before
"""

from __future__ import annotations

import argparse
import datetime
import functools
import http.client
import os
import random
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare as cmp  # noqa: E402  (perf/compare.py: Server, run_bench, kill_all, ...)

ROOT = os.path.dirname(HERE)


class Fig(NamedTuple):
    """One figure of one run: a number (shown with `spec`) or a yes/no (counted)."""
    label: str
    value: float | bool
    spec: str = ".2f"


class Target:
    """A running server under attack: its client port, monitoring port (if asked) and pid."""

    def __init__(self, b: "Binary", monitor: bool):
        self.b = b
        self.http = cmp.free_port() if monitor else 0
        self.srv = cmp.Server(b.path, b.logdir, b.name, ["-m", str(self.http)] if monitor else [])
        self.port, self.pid, self.url = self.srv.port, self.srv.pid, self.srv.url
        self.log_path = self.srv.log_path

    def stop(self) -> None:
        if not self.srv.alive():
            self.b.deaths.append(f"exit {self.srv.proc.returncode}: {self.srv.log_tail()}")
        self.srv.stop()


class Binary:
    """One server binary under attack: starts fresh servers, notes those that died."""

    def __init__(self, name: str, path: str, logdir: str):
        self.name, self.path, self.logdir = name, path, logdir
        self.deaths: list[str] = []

    def start(self, monitor: bool = False) -> Target:
        return Target(self, monitor)


def connect(port: int, sub: bytes = b"", timeout: float = 10) -> socket.socket:
    """A client that has sent CONNECT (and SUB `sub` 1) and seen the PONG that confirms it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
              + (b"SUB " + sub + b" 1\r\n" if sub else b"") + b"PING\r\n")
    got = b""
    while b"PONG\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise cmp.RunError("server closed during setup")
        got += chunk
    return s


def was_closed(s: socket.socket) -> bool:
    """Drains what the server sent; True if it had closed the connection."""
    s.settimeout(0.5)
    try:
        while True:
            if not s.recv(1 << 20):
                return True
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True


class Stopper:
    """Background threads that loop until `stop`."""

    def __init__(self):
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []

    def run(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(30)


# ---------------------------------------------------------------- stall (hole 10)
STALL_SUBJECT = b"stall.attack"
MARK = b"MSG "


class Reader(threading.Thread):
    """Reads one subscriber's socket and counts the messages (payloads never hold `MSG `).
    The server's PINGs go unanswered: within a run that is harmless (ping_max 2 at a
    2-minute interval)."""

    def __init__(self, s: socket.socket):
        super().__init__(daemon=True)
        self.s, self.count, self.stop = s, 0, False

    def run(self) -> None:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        tail = b""
        self.s.settimeout(0.2)
        while not self.stop:
            try:
                n = self.s.recv_into(view)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            if n == 0:
                return
            # A mark split across two reads starts in the previous read's last 3 bytes.
            edge = tail + bytes(view[:min(3, n)])
            self.count += buf.count(MARK, 0, n) + edge.count(MARK)
            tail = bytes(view[max(0, n - 3):n])


class Trickle(threading.Thread):
    """A subscriber that reads, but only 16 KiB every 50 ms (320 KiB/s): a slow-loris
    variant of the stalled one, whose socket keeps taking a few bytes."""

    def __init__(self, s: socket.socket):
        super().__init__(daemon=True)
        self.s, self.stop, self.closed = s, False, False

    def run(self) -> None:
        self.s.settimeout(0.05)
        while not self.stop:
            try:
                if not self.s.recv(16 * 1024):
                    self.closed = True
                    return
            except (TimeoutError, socket.timeout):
                pass
            except OSError:
                self.closed = True
                return
            time.sleep(0.05)


def publish(s: socket.socket, size: int, until: float) -> None:
    """Publishes `size`-byte messages in 256 KiB batches as fast as the server takes them."""
    frame = b"PUB " + STALL_SUBJECT + b" %d\r\n" % size + b"x" * size + b"\r\n"
    batch = frame * max(1, (256 * 1024) // len(frame))
    try:
        while time.monotonic() < until:
            s.sendall(batch)
    except OSError:
        pass


def stall_run(b: Binary, laggard_kind: str, a) -> dict:
    """One run on a fresh server: `laggard_kind` is "" (none), "stuck" (never reads) or
    "trickle". Returns the healthy subscribers' mean rate, their rate each second, the
    server's peak RSS and whether the laggard was cut off."""
    srv = b.start()
    socks: list[socket.socket] = []
    try:
        subs = [connect(srv.port, STALL_SUBJECT) for _ in range(a.healthy)]
        laggard = connect(srv.port, STALL_SUBJECT) if laggard_kind else None
        trickle = Trickle(laggard) if laggard_kind == "trickle" else None
        if trickle:
            trickle.start()
        pub = connect(srv.port)
        socks = subs + [pub] + ([laggard] if laggard else [])
        readers = [Reader(s) for s in subs]
        for r in readers:
            r.start()
        t0 = time.monotonic()
        pt = threading.Thread(target=publish, args=(pub, 128, t0 + a.stall_secs), daemon=True)
        pt.start()
        per_second, prev = [], 0
        for i in range(1, int(a.stall_secs) + 1):
            time.sleep(max(0.0, t0 + i - time.monotonic()))
            now = sum(r.count for r in readers)
            per_second.append((now - prev) / a.healthy)
            prev = now
        time.sleep(max(0.0, t0 + a.stall_secs - time.monotonic()))
        count = sum(r.count for r in readers)
        pt.join(30)
        hwm = cmp.proc_status(srv.pid)["VmHWM"] / 1024
        cut = False
        if trickle:
            trickle.stop = True
            trickle.join()
            cut = trickle.closed or was_closed(laggard)
        elif laggard is not None:
            cut = was_closed(laggard)
        for r in readers:
            r.stop = True
        return {"rate": count / a.healthy / a.stall_secs, "per_second": per_second,
                "rss": hwm, "cut": cut}
    finally:
        for s in socks:
            s.close()
        srv.stop()


def attack_stall(b: Binary, a) -> list[Fig]:
    """One publisher sends 128 B messages on one subject as fast as the server takes them for
    10 s (nats-server's write deadline), to 10 subscribers that read everything; in the
    attacked runs an 11th subscriber never reads ("stuck") or reads only 320 KiB/s
    ("trickle"). Figure: the healthy subscribers' rate in the attacked run over their rate in
    a run without the laggard made just before (a fresh server each); 1.0 means the laggard
    costs the others nothing (the issue's target: at least 0.9). Also the server's peak RSS
    and whether the laggard was cut off."""
    kinds = ["", "stuck"] + (["trickle"] if a.trickle else [])
    runs = {k: stall_run(b, k, a) for k in kinds}
    for k, r in runs.items():
        print(f"   {k or 'alone'}: healthy msgs/s each second: "
              + " ".join(f"{x:,.0f}" for x in r["per_second"]), file=sys.stderr)
    base = runs[""]["rate"]
    figs = [Fig("healthy subscriber msgs/s, alone", base, ",.0f"),
            Fig("peak RSS MiB, alone", runs[""]["rss"], ".1f")]
    for k, what in (("stuck", "one never reads"), ("trickle", "one reads 320 KiB/s")):
        if k in runs:
            r = runs[k]
            figs += [Fig(f"healthy msgs/s, {what}", r["rate"], ",.0f"),
                     Fig(f"ratio to alone, {what}", r["rate"] / base if base else 0.0, ".3f"),
                     Fig(f"peak RSS MiB, {what}", r["rss"], ".1f"),
                     Fig(f"laggard cut off, {what}", r["cut"])]
    return figs


# ---------------------------------------------------------------- monitoring (holes 8, 9)
def http_get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """One GET on a fresh connection: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class KeepAlive:
    """A kept-alive HTTP/1.1 connection that reads bodies as fast as the socket gives them
    (no decoding: the attack is on the server, the client must not be the bottleneck)."""

    def __init__(self, port: int, timeout: float = 60):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray(1 << 20)

    def get(self, path: str) -> int:
        """GET path; returns the body size on the wire (chunk framing included)."""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = bytearray()
        while b"\r\n\r\n" not in data:
            data += self.recv()
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        if m:
            want, got = int(m.group(1)), len(body)
            while got < want:
                got += len(self.recv())
            return got
        if not re.search(rb"(?i)\r\ntransfer-encoding: *chunked", head):
            raise OSError("neither Content-Length nor chunked")
        # JSON bodies hold no CRLF: the last chunk's CRLF 0 CRLF CRLF ends the body.
        tail, got = body[-7:], len(body)
        while not tail.endswith(b"\r\n0\r\n\r\n") and body != b"0\r\n\r\n":
            chunk = self.recv()
            got += len(chunk)
            tail = (tail + chunk)[-7:]
        return got

    def recv(self) -> bytes:
        n = self.sock.recv_into(self.buf)
        if n == 0:
            raise OSError("closed")
        return self.buf[:n]

    def close(self) -> None:
        self.sock.close()


def stalled_request(port: int) -> socket.socket | None:
    """A connection holding an HTTP slot: an unfinished request, never completed."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"GET /varz HTTP/1.1\r\n")
        s.setblocking(False)
        return s
    except OSError:
        return None


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def attack_varz_slots(b: Binary, a) -> list[Fig]:
    """256 connections each send `GET /varz HTTP/1.1\\r\\n` and wait, and are reopened every
    second as the server drops them; meanwhile 40 fresh GET /varz, each given 2 s. Figures:
    how many were served, and how many attacking connections the server dropped (and the
    attacker reopened) meanwhile."""
    srv = b.start(monitor=True)
    held = [s for s in (stalled_request(srv.http) for _ in range(a.slots)) if s]
    reopened = [0]
    bg = Stopper()

    def keep_holding():
        # Reopen every slot the server took back, as an attacker would.
        while not bg.done.wait(a.reopen):
            lost = [s for s in held if closed_by_peer(s)]
            for s in lost:
                held.remove(s)
                s.close()
            fresh = [s for s in (stalled_request(srv.http) for _ in lost) if s]
            held.extend(fresh)
            reopened[0] += len(fresh)

    try:
        bg.run(keep_holding)
        time.sleep(0.5)
        served = 0
        for _ in range(a.varz_n):
            try:
                status, body = http_get(srv.http, "/varz", timeout=2.0)
                served += status == 200 and b'"server_id"' in body
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(a.varz_gap)
    finally:
        bg.stop()
        for s in held:
            s.close()
        srv.stop()
    return [Fig(f"/varz served, of {a.varz_n}", served, "d"),
            Fig("attacking connections dropped and reopened", reopened[0], "d")]


def a_bench() -> str:
    return os.environ.get("TERN_BENCH", os.path.join(HERE, "bench/target/release/tern-bench"))


def hold_conns(srv: Target, n: int) -> subprocess.Popen:
    """tern-bench conns: n connections (CONNECT + PING each) held until its stdin closes."""
    p = subprocess.Popen([a_bench(), "conns", "-s", srv.url, "-c", str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cmp.LIVE.append(p)
    deadline = time.monotonic() + 60
    for line in p.stdout:
        if line.startswith("READY"):
            return p
        if time.monotonic() > deadline:
            break
    raise cmp.RunError(f"tern-bench conns did not get ready on {srv.b.name}")


def latency(srv: Target, a) -> tuple[float, float]:
    """Request/reply p50 and p99 in ms (tern-bench latency, open loop, 128 B)."""
    out = cmp.run_bench(a_bench(), ["latency", "-s", srv.url, "-rate", str(a.rate),
                                    "-d", str(a.secs), "-ms", "128"], timeout=a.secs + 120)
    m = re.search(r"p50 ([\d,.]+) \| p90 [\d,.]+ \| p99 ([\d,.]+)", out)
    if not m:
        raise cmp.RunError(f"no latency line in tern-bench output:\n{out}")
    return cmp.num(m.group(1)) / 1000, cmp.num(m.group(2)) / 1000


def attack_connz_latency(b: Binary, a) -> list[Fig]:
    """Request/reply latency (tern-bench latency, 1,000 requests/s open loop, 5 s) with 5,000
    idle connections open, first alone, then while 8 clients loop on GET
    /connz?limit=5000 (about 2.5 MB each) on kept-alive connections, reading as fast as
    they can. Figures: p50 and p99 in ms, the p99 ratio, and the /connz completed."""
    srv = b.start(monitor=True)
    holder = None
    try:
        holder = hold_conns(srv, a.conns)
        base50, base99 = latency(srv, a)
        bg = Stopper()
        done = [0] * a.hammerers
        sizes = [0] * a.hammerers

        def hammer(i: int):
            c = None
            while not bg.done.is_set():
                try:
                    c = c or KeepAlive(srv.http)
                    sizes[i] = c.get(f"/connz?limit={a.conns}")
                    done[i] += 1
                except OSError:
                    if c:
                        c.close()
                    c = None
            if c:
                c.close()

        for i in range(a.hammerers):
            bg.run(hammer, i)
        time.sleep(1.0)
        start = sum(done)
        try:
            hot50, hot99 = latency(srv, a)
        finally:
            bg.stop()
        served = sum(done) - start
    finally:
        if holder:
            holder.stdin.close()
            cmp.stop_proc(holder)
        srv.stop()
    return [
        Fig(f"req/reply p50 ms, {a.conns:,} idle conns", base50),
        Fig(f"req/reply p99 ms, {a.conns:,} idle conns", base99),
        Fig(f"req/reply p50 ms, {a.hammerers} clients on /connz", hot50),
        Fig(f"req/reply p99 ms, {a.hammerers} clients on /connz", hot99),
        Fig("p99 ratio, /connz hammered to idle", hot99 / base99 if base99 else 0.0),
        Fig("/connz served during that run", served, "d"),
        Fig("MB per /connz", max(sizes) / 1e6, ".1f"),
    ]


# ---------------------------------------------------------------- fd_log (hole 11)
def log_lines(path: str) -> tuple[int, int]:
    """(all lines, lines about running out of descriptors) in a server's log so far."""
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    return len(lines), sum("too many open files" in x.lower() for x in lines)


def got_info(s: socket.socket, wait: float) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(4096).startswith(b"INFO")
    except OSError:
        return False


def attack_fd_log(b: Binary, a) -> list[Fig]:
    """The server runs with RLIMIT_NOFILE 64 (set with prlimit once it listens, hard limit
    too, so Go cannot raise it). Clients connect until one gets no INFO, so every
    descriptor is taken; then for 60 s new connections keep knocking, 10 per second, kept
    open. Figures: the lines the server logged in that window (all of them, and those
    saying "too many open files"), scaled to a minute."""
    srv = b.start()
    held: list[socket.socket] = []
    try:
        resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (a.nofile, a.nofile))
        while True:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
            held.append(s)
            if not got_info(s, 0.5):
                break
            if len(held) > a.nofile + 50:
                raise cmp.RunError("never ran out of descriptors")
        before = log_lines(srv.log_path)
        start = time.monotonic()
        tries = 0
        while time.monotonic() < start + a.fd_secs:
            tries += 1
            try:
                held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=2))
            except OSError:
                pass  # the listen backlog is full: a knock all the same
            time.sleep(max(0.0, start + tries / a.fd_rate - time.monotonic()))
        after = log_lines(srv.log_path)
    finally:
        for s in held:
            s.close()
        srv.stop()
    per_min = 60.0 / a.fd_secs
    return [Fig("log lines per minute, all", (after[0] - before[0]) * per_min, ",.0f"),
            Fig("log lines per minute, 'too many open files'",
                (after[1] - before[1]) * per_min, ",.0f")]


# ---------------------------------------------------------------- hashflood (hole 3)
# Each subject is k 16-byte blocks, each one of these two: flipping bit 63 of one word and
# bit 22 of the next leaves tern's old hash `h = (rotl(h, 23) ^ word) * K` unchanged for
# every seed, so the 2^k choices share one hash.
BLOCKS = (b"aaaaaaaaaaaaaaaa", b"aaaaaaa\xe1aa!aaaaa")


@functools.lru_cache(maxsize=None)
def subject_sets(k: int) -> tuple[list[bytes], list[bytes]]:
    """2^k subjects colliding in the old hash, and 2^k random ones of the same length."""
    colliding = [b"".join(BLOCKS[bits >> i & 1] for i in range(k)) for bits in range(1 << k)]
    rng = random.Random(k)
    letters = b"abcdefghijklmnopqrstuvwxyz"
    rand = [bytes(rng.choices(letters, k=16 * k)) for _ in range(1 << k)]
    return colliding, rand


def subscribe_ms(srv: Target, subjects: list[bytes], timeout: float = 600) -> float:
    """Milliseconds from the first SUB (one connection) to the PONG after the last one."""
    s = connect(srv.port, timeout=timeout)
    try:
        t0 = time.perf_counter()
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
        ms = (time.perf_counter() - t0) * 1e3
    finally:
        s.close()
    if b"PONG\r\n" not in buf:
        raise cmp.RunError(f"no PONG after the SUBs: {buf[:200]!r}")
    return ms


def attack_hashflood(b: Binary, a) -> list[Fig]:
    """Time to subscribe 2^k subjects of 16k bytes that all collide in tern's old map hash
    against 2^k random subjects of the same length (one connection, SUBs in batches, then
    PING; a fresh server for each set). A flood-proof hash gives a ratio near 1; the old one
    grew as 2^k (each insert compared with every earlier key)."""
    figs = []
    for k in (int(x) for x in a.hash_k.split(",")):
        colliding, rand = subject_sets(k)
        ms = []
        for subjects in (colliding, rand):
            srv = b.start()
            try:
                ms.append(subscribe_ms(srv, subjects))
            finally:
                srv.stop()
        n = f"{1 << k:,} SUBs of {16 * k} B"
        figs += [Fig(f"{n}, colliding: ms", ms[0], ",.1f"),
                 Fig(f"{n}, random: ms", ms[1], ",.1f"),
                 Fig(f"{n}: colliding / random", ms[0] / ms[1] if ms[1] else 0.0)]
    return figs


ATTACKS = {
    "stall": attack_stall,
    "connz_latency": attack_connz_latency,
    "varz_slots": attack_varz_slots,
    "fd_log": attack_fd_log,
    "hashflood": attack_hashflood,
}


# ---------------------------------------------------------------- report
def cell(vals: list) -> str:
    """Median (min–max) of one figure's values over the repetitions; yes/no as a count."""
    if not vals:
        return "-"
    spec = vals[0].spec
    xs = [v.value for v in vals]
    if isinstance(xs[0], bool):
        return "yes" if all(xs) else "no" if not any(xs) else f"{sum(xs)}/{len(xs)} yes"
    text = number(statistics.median(xs), spec)
    if min(xs) != max(xs):
        text += f" ({number(min(xs), spec)}–{number(max(xs), spec)})"
    return text


def number(x: float, spec: str) -> str:
    """x with format `spec`; "d" (a count) shows a median between two counts as x.5."""
    if spec == "d":
        return f"{x:.1f}" if x % 1 else f"{int(x):,d}"
    return f"{x:{spec}}"


def ratio(a_vals: list, b_vals: list) -> str:
    if not a_vals or not b_vals or isinstance(a_vals[0].value, bool):
        return ""
    x = statistics.median(v.value for v in a_vals)
    y = statistics.median(v.value for v in b_vals)
    if not y:
        return ""
    r = x / y
    return f"{r:.2f}" if r >= 0.1 else f"{r:.1g}" if r >= 0.001 else f"{r:.0e}"


def table(names: list[str], rows: dict, order: list) -> list[str]:
    both = "tern" in names and "nats-server" in names
    head = ["attack", "figure"] + names + (["tern / nats-server"] if both else [])
    lines = []
    for atk, fig in order:
        got = rows[(atk, fig)]
        line = [atk, fig] + [cell(got.get(n, [])) for n in names]
        if both:
            line.append(ratio(got.get("tern", []), got.get("nats-server", [])))
        lines.append(line)
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    fmt = "| " + " | ".join(f"{{:{w}}}" for w in widths) + " |"
    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return [fmt.format(*head), sep] + [fmt.format(*x) for x in lines]


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return (f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min), "
            f"{cmp.busy_cpus():.2f} CPUs busy over 1 s")


def shown(path: str) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    return path if rel.startswith("..") else rel


# The 1-minute load average at the start of each run: other work on the machine shows here.
LOADS: list[float] = []


def report(a, servers, attacks, rows, order, failures, load_before, elapsed) -> str:
    env = "".join(f"{k}={shlex.quote(shown(os.environ[k]))} "
                  for k in ("TERN_BIN", "NATS_SERVER", "TERN_BENCH") if k in os.environ)
    argv = [shown(sys.argv[0])] + sys.argv[1:]
    md = ["# Attacks: tern vs nats-server", "",
          f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}"]
    md += cmp.machine_info()
    md += [f"- Load before the run: {load_before}",
           f"- Load during the run: 1-minute load average at each run's start "
           f"{min(LOADS, default=0):.2f}–{max(LOADS, default=0):.2f}, median "
           f"{statistics.median(LOADS or [0]):.2f} (the attacks' own processes count in it)",
           f"- Load after the run: {load_line()}",
           f"- Command: `{env}python3 {shlex.join(argv)}` (`make attacks` builds tern with "
           "`make build` and tern-bench, then runs `perf/attacks.py --out perf/ATTACKS.md`)",
           "- Servers: " + "; ".join(f"{n} = `{shown(p)}` ({cmp.version_of(p)})"
                                     for n, p in servers),
           f"- Method: a fresh server per run, on loopback; {a.reps} repetition(s), the servers "
           "alternating; median, then (min–max) when the repetitions differ; "
           f"total {elapsed / 60:.1f} min. On a shared 2-core machine read the ratios "
           "rather than the absolute numbers.", ""]
    md += table([n for n, _ in servers], rows, order)
    md += ["", "What each attack does (with the default options; the command shows any other):", ""]
    for atk in attacks:
        doc = " ".join(ATTACKS[atk].__doc__.split("\n\n")[0].split())
        md.append(f"- **{atk}**: {doc}")
    if failures:
        md += ["", "Failures:", ""] + [f"- {f}" for f in failures]
    return "\n".join(md) + "\n"


# ---------------------------------------------------------------- driver
def run_attacks(a, servers, attacks, logdir):
    """Runs every attack `a.reps` times on every server, servers alternating. Returns the
    figures by (attack, figure) and server, their display order, and the failures."""
    rows: dict[tuple[str, str], dict[str, list[Fig]]] = {}
    order: list[tuple[str, str]] = []
    failures: list[str] = []
    for atk in attacks:
        for rep in range(a.reps):
            for name, path in servers:
                if any(f.startswith(f"{atk} on {name}:") for f in failures):
                    continue  # it failed once: do not repeat time-outs
                print(f"-- {atk} on {name}, {rep + 1}/{a.reps}", file=sys.stderr, flush=True)
                LOADS.append(os.getloadavg()[0])
                t0 = time.monotonic()
                b = Binary(name, path, logdir)
                try:
                    figs = ATTACKS[atk](b, a)
                except (cmp.RunError, OSError) as e:
                    failures.append(f"{atk} on {name}: {e}")
                    print(f"ERROR: {failures[-1]}", file=sys.stderr, flush=True)
                    figs = [Fig("run failed", True)]
                if b.deaths:
                    failures.append(f"{atk} on {name}: server died: {b.deaths[0]}")
                    figs.append(Fig("server died during the attack", True))
                for f in figs:
                    if (atk, f.label) not in rows:
                        rows[(atk, f.label)] = {}
                        order.append((atk, f.label))
                    rows[(atk, f.label)].setdefault(name, []).append(f)
                print(f"   {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows, order, failures


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attacks", default=",".join(ATTACKS),
                   help="comma-separated, of: " + ", ".join(ATTACKS))
    p.add_argument("--reps", type=int, default=3, help="repetitions of each attack per server")
    p.add_argument("--out", help="also write the report, as markdown, to this file")
    p.add_argument("--tern", default=os.environ.get(
        "TERN_BIN", os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/tern")))
    p.add_argument("--nats-server", default=os.environ.get("NATS_SERVER", "/usr/sbin/nats-server"))
    p.add_argument("--server", action="append", default=[], metavar="NAME=BIN",
                   help="another server binary to attack (e.g. an older tern)")
    g = p.add_argument_group("stall")
    g.add_argument("--healthy", type=int, default=10, help="subscribers that read everything")
    g.add_argument("--stall-secs", type=float, default=10, help="seconds per run")
    g.add_argument("--no-trickle", dest="trickle", action="store_false",
                   help="skip the run with a subscriber reading 320 KiB/s")
    g = p.add_argument_group("connz_latency")
    g.add_argument("--conns", type=int, default=5000, help="idle connections")
    g.add_argument("--hammerers", type=int, default=8, help="clients on /connz")
    g.add_argument("--rate", type=int, default=1000, help="requests per second")
    g.add_argument("--secs", type=float, default=5, help="seconds per latency run")
    g = p.add_argument_group("varz_slots")
    g.add_argument("--slots", type=int, default=256, help="attacking connections")
    g.add_argument("--reopen", type=float, default=1.0, help="seconds between reopens")
    g.add_argument("--varz-n", type=int, default=40, help="fresh GET /varz to try")
    g.add_argument("--varz-gap", type=float, default=0.1, help="seconds between them")
    g = p.add_argument_group("fd_log")
    g.add_argument("--nofile", type=int, default=64, help="the server's RLIMIT_NOFILE")
    g.add_argument("--fd-secs", type=float, default=60, help="seconds of knocking, out of fds")
    g.add_argument("--fd-rate", type=float, default=10, help="new connections per second")
    g = p.add_argument_group("hashflood")
    g.add_argument("--hash-k", default="12,14", help="comma-separated k: 2^k subjects each")
    a = p.parse_args()
    a.attack_list = [x for x in a.attacks.split(",") if x]
    for x in a.attack_list:
        if x not in ATTACKS:
            p.error(f"unknown attack {x!r} (known: {', '.join(ATTACKS)})")
    if a.reps < 1:
        p.error("--reps must be at least 1")
    return p, a


def main() -> int:
    p, a = parse_args()
    servers = [("tern", a.tern)]
    if os.path.exists(a.nats_server):
        servers.append(("nats-server", a.nats_server))
    else:
        print(f"note: {a.nats_server} not found; tern only", file=sys.stderr)
    servers += [tuple(s.split("=", 1)) for s in a.server]
    for _, binary in servers:
        if not os.access(binary, os.X_OK):
            p.error(f"not executable: {binary}")
    if "connz_latency" in a.attack_list and not os.access(a_bench(), os.X_OK):
        p.error(f"tern-bench not built: {a_bench()} (see perf/README.md)")
    cmp.raise_nofile()
    signal.signal(signal.SIGTERM, cmp.on_signal)
    signal.signal(signal.SIGHUP, cmp.on_signal)
    load_before = load_line()
    logdir = tempfile.mkdtemp(prefix="tern-attacks-")
    t0 = time.monotonic()
    try:
        rows, order, failures = run_attacks(a, servers, a.attack_list, logdir)
    except KeyboardInterrupt as e:
        print(f"\nattacks.py: interrupted ({e}); servers stopped", file=sys.stderr)
        return 130
    finally:
        cmp.kill_all()
    text = report(a, servers, a.attack_list, rows, order, failures, load_before,
                  time.monotonic() - t0)
    print(text, end="")
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if failures:
        print(f"attacks.py: {len(failures)} failure(s); server logs in {logdir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
