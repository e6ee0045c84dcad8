#!/usr/bin/env python3
"""Hostile-load figures: tern and nats-server side by side (issue 9's closing note).

Each attack is one function that gets a freshly started server and returns its figures; the
script runs every selected attack against every server (tern, the reference nats-server, and
any --server NAME=BIN given), on loopback only, stops by itself and prints one table.

  varz_slots     /varz availability while attackers hold every HTTP slot: SLOTS connections
                 that each send `GET /varz HTTP/1.1\\r\\n` and wait, reopened as they drop;
                 meanwhile N fresh GET /varz, each given 2 s. Figures: served / N, and
                 how many slots the attackers lost (and reopened) meanwhile.
  connz_latency  request/reply latency (tern-bench latency, open loop) with 5,000 idle
                 connections open, first alone (baseline), then while 8 clients loop on
                 GET /connz?limit=5000 (about 2.5 MB each), reading as fast as they can.
                 Figures: p50 and p99 in ms, and how many /connz the hammerers completed.

Adding an attack: write `def attack_NAME(srv: Target, a) -> list[tuple[str, str]]` (rows of
figure name and value, in display order), register it in ATTACKS. `Target` gives the ports
and pid; `perf/compare.py`'s helpers (Server, run_bench, cpu_ns) are imported as `cmp`.

Python 3 standard library only; reuses perf/bench's tern-bench (build it with
`cargo build --release --manifest-path perf/bench/Cargo.toml`) and tern from `make build`
(or TERN_BIN / --tern). Run on a quiet machine: on 2 cores any other load is in the figures.

  python3 perf/attacks.py                         # all attacks, tern vs nats-server
  python3 perf/attacks.py --attacks varz_slots --server old=/tmp/tern-before
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare as cmp  # noqa: E402  (perf/compare.py: Server, run_bench, kill_all, ...)

ROOT = os.path.dirname(HERE)


class Target:
    """A running server under attack: its client and monitoring ports and its pid."""

    def __init__(self, name: str, binary: str, logdir: str):
        self.name = name
        self.http = cmp.free_port()
        self.srv = cmp.Server(binary, logdir, name, ["-m", str(self.http)])
        self.port = self.srv.port
        self.pid = self.srv.pid
        self.url = self.srv.url

    def stop(self) -> None:
        self.srv.stop()


# ---------------------------------------------------------------- small clients
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


# ---------------------------------------------------------------- attacks
def attack_varz_slots(srv: Target, a) -> list[tuple[str, str]]:
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
    bg.stop()
    for s in held:
        s.close()
    return [
        ("/varz served under slot attack", f"{served}/{a.varz_n}"),
        ("attacker reopens", str(reopened[0])),
    ]


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
    raise cmp.RunError(f"tern-bench conns did not get ready on {srv.name}")


def latency(srv: Target, a) -> tuple[float, float]:
    out = cmp.run_bench(a_bench(), ["latency", "-s", srv.url, "-rate", str(a.rate),
                                    "-d", str(a.secs), "-ms", "128"], timeout=a.secs + 120)
    m = re.search(r"p50 ([\d,.]+) \| p90 [\d,.]+ \| p99 ([\d,.]+)", out)
    if not m:
        raise cmp.RunError(f"no latency line in tern-bench output:\n{out}")
    return cmp.num(m.group(1)) / 1000, cmp.num(m.group(2)) / 1000


def attack_connz_latency(srv: Target, a) -> list[tuple[str, str]]:
    holder = hold_conns(srv, a.conns)
    try:
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
        hot50, hot99 = latency(srv, a)
        served = sum(done) - start
        bg.stop()
    finally:
        holder.stdin.close()
        cmp.stop_proc(holder)
    return [
        (f"req/reply p50 ms, {a.conns} idle conns", f"{base50:.2f}"),
        (f"req/reply p99 ms, {a.conns} idle conns", f"{base99:.2f}"),
        (f"req/reply p50 ms, {a.hammerers} clients on /connz", f"{hot50:.2f}"),
        (f"req/reply p99 ms, {a.hammerers} clients on /connz", f"{hot99:.2f}"),
        ("/connz served during that run", f"{served} ({max(sizes) / 1e6:.1f} MB each)"),
    ]


ATTACKS = {
    "varz_slots": attack_varz_slots,
    "connz_latency": attack_connz_latency,
}


# ---------------------------------------------------------------- driver
def a_bench() -> str:
    return os.environ.get("TERN_BENCH", os.path.join(HERE, "bench/target/release/tern-bench"))


def print_table(names: list[str], rows: dict[tuple[str, str], dict[str, str]], order) -> None:
    head = ["attack", "figure"] + names
    lines = [[atk, fig] + [rows[(atk, fig)].get(n, "-") for n in names] for atk, fig in order]
    widths = [max(len(str(r[i])) for r in [head] + lines) for i in range(len(head))]
    fmt = "| " + " | ".join(f"{{:{w}}}" for w in widths) + " |"
    print(fmt.format(*head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print(fmt.format(*line))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated: " + ", ".join(ATTACKS))
    p.add_argument("--tern", default=os.environ.get(
        "TERN_BIN", os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/tern")))
    p.add_argument("--nats-server", default=os.environ.get("NATS_SERVER", "/usr/sbin/nats-server"))
    p.add_argument("--server", action="append", default=[], metavar="NAME=BIN",
                   help="another server binary to attack (e.g. an older tern)")
    p.add_argument("--slots", type=int, default=256, help="varz_slots: attacking connections")
    p.add_argument("--reopen", type=float, default=1.0, help="varz_slots: seconds between reopens")
    p.add_argument("--varz-n", type=int, default=40, help="varz_slots: fresh GET /varz to try")
    p.add_argument("--varz-gap", type=float, default=0.1, help="varz_slots: seconds between them")
    p.add_argument("--conns", type=int, default=5000, help="connz_latency: idle connections")
    p.add_argument("--hammerers", type=int, default=8, help="connz_latency: clients on /connz")
    p.add_argument("--rate", type=int, default=1000, help="connz_latency: requests per second")
    p.add_argument("--secs", type=float, default=5, help="connz_latency: seconds per latency run")
    a = p.parse_args()
    attacks = [x for x in a.attacks.split(",") if x]
    for x in attacks:
        if x not in ATTACKS:
            p.error(f"unknown attack {x!r} (known: {', '.join(ATTACKS)})")
    servers = [("tern", a.tern)]
    if os.path.exists(a.nats_server):
        servers.append(("nats-server", a.nats_server))
    else:
        print(f"note: {a.nats_server} not found; tern only", file=sys.stderr)
    servers += [tuple(s.split("=", 1)) for s in a.server]
    for _, binary in servers:
        if not os.access(binary, os.X_OK):
            p.error(f"not executable: {binary}")
    if "connz_latency" in attacks and not os.access(a_bench(), os.X_OK):
        p.error(f"tern-bench not built: {a_bench()} (see perf/README.md)")
    cmp.raise_nofile()
    logdir = tempfile.mkdtemp(prefix="tern-attacks-")
    rows: dict[tuple[str, str], dict[str, str]] = {}
    order: list[tuple[str, str]] = []
    failed = 0
    try:
        for atk in attacks:
            for name, binary in servers:
                print(f"-- {atk} on {name}", file=sys.stderr, flush=True)
                t0 = time.monotonic()
                srv = Target(name, binary, logdir)
                try:
                    figures = ATTACKS[atk](srv, a)
                    if not srv.srv.alive():
                        figures.append(("server survived", "NO"))
                except cmp.RunError as e:
                    print(f"ERROR: {atk} on {name}: {e}", file=sys.stderr)
                    figures, failed = [("error", "FAIL")], failed + 1
                finally:
                    srv.stop()
                for fig, val in figures:
                    if (atk, fig) not in rows:
                        rows[(atk, fig)] = {}
                        order.append((atk, fig))
                    rows[(atk, fig)][name] = val
                print(f"   {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        cmp.kill_all()
    print_table([n for n, _ in servers], rows, order)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
