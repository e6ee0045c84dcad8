#!/usr/bin/env python3
"""Attack: one stalled subscriber among healthy ones (issue 9, hole 10).

One publisher sends 128 B messages on one subject as fast as the server takes them, for
`duration` seconds (10 s: nats-server's default write deadline, the time a consumer that never
reads can stay connected). Ten subscribers read everything; in an attacked run an eleventh
subscriber on the same subject connects, subscribes and then never reads ("stuck"), or reads
only 16 KiB every 50 ms ("trickle", a slow-loris variant whose socket keeps taking a little).
The figure is the healthy subscribers' delivery rate in the attacked run divided by their
rate in a run without the laggard (same server binary, fresh process per run): 1.0 means the
laggard costs the others nothing. Also: the server's peak RSS (VmHWM) in each run and whether
the laggard was cut off.

`run(server_bin)` returns the figures as a dict (`ratio`, `peak_rss_mib`, `stalled_cut`,
`trickle_ratio`, ...; for perf/attacks.py); run as a script (`[--pairs N] [BIN...]`) it prints
a table for each binary (default: tern's release build and /usr/sbin/nats-server).
Python 3.11 standard library only; loopback; the server is started as `BIN -a 127.0.0.1 -p P`.
The clients are Python threads that move bytes with sendall/recv_into and count `MSG ` with
bytearray.count, so they cost little CPU next to the server; still, with 2 cores, run on an
otherwise quiet machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SUBJECT = b"stall.attack"
MARK = b"MSG "


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(server_bin: str, args: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    p = subprocess.Popen([server_bin, "-a", "127.0.0.1", "-p", str(port), *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.025)
    p.kill()
    raise RuntimeError(f"{server_bin} did not listen on {port}")


def stop_server(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def connect(port: int, subscribe: bool) -> socket.socket:
    """A client that has sent CONNECT (and SUB) and seen the PONG that confirms them."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
              + (b"SUB " + SUBJECT + b" 1\r\n" if subscribe else b"") + b"PING\r\n")
    got = b""
    while b"PONG\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("server closed during setup")
        got += chunk
    return s


class Reader(threading.Thread):
    """Reads one subscriber's socket and counts the messages (payloads never hold `MSG `).
    The server's PINGs go unanswered: within the run that is harmless (ping_max 2 at a
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


def publish(s: socket.socket, size: int, until: float, out: list[int]) -> None:
    frame = b"PUB " + SUBJECT + b" %d\r\n" % size + b"x" * size + b"\r\n"
    per = max(1, (256 * 1024) // len(frame))
    batch = frame * per
    sent = 0
    try:
        while time.monotonic() < until:
            s.sendall(batch)
            sent += per
    except OSError:
        pass
    out.append(sent)


def one_run(server_bin: str, args: list[str], laggard_kind: str, healthy: int, size: int,
            duration: float) -> dict:
    """One run: `laggard_kind` is "" (none), "stuck" (never reads) or "trickle"."""
    p, port = start_server(server_bin, args)
    try:
        subs = [connect(port, True) for _ in range(healthy)]
        laggard = connect(port, True) if laggard_kind else None
        trickle = Trickle(laggard) if laggard_kind == "trickle" else None
        if trickle:
            trickle.start()
        pub = connect(port, False)
        readers = [Reader(s) for s in subs]
        for r in readers:
            r.start()
        t0 = time.monotonic()
        sent: list[int] = []
        pt = threading.Thread(target=publish, args=(pub, size, t0 + duration, sent), daemon=True)
        pt.start()
        per_second = []
        prev = 0
        for i in range(1, int(duration) + 1):
            time.sleep(max(0.0, t0 + i - time.monotonic()))
            now = sum(r.count for r in readers)
            per_second.append((now - prev) / healthy)
            prev = now
        time.sleep(max(0.0, t0 + duration - time.monotonic()))
        counts = [r.count for r in readers]
        pt.join(30)
        hwm = peak_rss_mib(p.pid)
        cut = None
        if trickle:
            trickle.stop = True
            trickle.join()
            cut = trickle.closed or was_closed(laggard)
        elif laggard is not None:
            cut = was_closed(laggard)
        for r in readers:
            r.stop = True
        for s in subs + [pub] + ([laggard] if laggard else []):
            s.close()
        return {
            "rate": sum(counts) / healthy / duration,
            "min_rate": min(counts) / duration,
            "published": sent[0] if sent else 0,
            "per_second": per_second,
            "peak_rss_mib": hwm,
            "stalled_cut": cut,
        }
    finally:
        stop_server(p)


def was_closed(s: socket.socket) -> bool:
    """Drains what the never-reading subscriber was sent; True if the server had closed it."""
    s.settimeout(0.5)
    try:
        while True:
            if not s.recv(1 << 20):
                return True
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True


def run(server_bin: str, duration: float = 10.0, healthy: int = 10, size: int = 128,
        args: list[str] | None = None, pairs: int = 1, trickle: bool = True) -> dict:
    """Healthy subscribers' rate with one stalled subscriber (never reads) as a ratio of
    their rate without it, and the peak RSS of the attacked run; with `trickle`, the same for
    a subscriber that reads 320 KiB/s (keys prefixed `trickle_`). Each pair is a run without
    the laggard followed by the attacked runs (fresh server each); a pair's ratio compares
    runs made seconds apart, which the load of a shared machine disturbs less; the figures
    are medians over `pairs` (`ratios` lists them all)."""
    args = args or []
    kinds = ["", "stuck"] + (["trickle"] if trickle else [])
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for _ in range(pairs):
        for k in kinds:
            runs[k].append(one_run(server_bin, args, k, healthy, size, duration))

    def median(vals: list[float]) -> float:
        vals = sorted(vals)
        n = len(vals)
        return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2

    base = runs[""]
    out = {
        "server": server_bin,
        "pairs": pairs,
        "base_rate": median([r["rate"] for r in base]),
        "base_peak_rss_mib": max(r["peak_rss_mib"] for r in base),
        "base_per_second": base[0]["per_second"],
    }
    for k in kinds[1:]:
        pre = "" if k == "stuck" else k + "_"
        hit = runs[k]
        ratios = [h["rate"] / b["rate"] if b["rate"] else 0.0 for h, b in zip(hit, base)]
        slowest = [h["min_rate"] / b["rate"] if b["rate"] else 0.0 for h, b in zip(hit, base)]
        out[pre + "stalled_rate"] = median([r["rate"] for r in hit])
        out[pre + "ratio"] = median(ratios)
        out[pre + "ratios"] = ratios
        out[pre + "min_ratio"] = median(slowest)
        out[pre + "peak_rss_mib"] = max(r["peak_rss_mib"] for r in hit)
        out[pre + "stalled_cut"] = all(r["stalled_cut"] for r in hit)
        out[pre + "per_second"] = hit[0]["per_second"]
    return out


def main() -> int:
    pairs = 1
    argv = sys.argv[1:]
    if argv[:1] == ["--pairs"]:
        pairs, argv = int(argv[1]), argv[2:]
    bins = argv or [
        os.environ.get("TERN_BIN",
                       os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/tern")),
        os.environ.get("NATS_SERVER", "/usr/sbin/nats-server"),
    ]
    print(f"healthy subscribers' rate with a laggard / without, {pairs} pair(s) of 10 s runs")
    print("| server | laggard | healthy msgs/s alone | with the laggard | ratio (median) "
          "| ratio per pair | slowest sub | peak RSS MiB (alone / with) | laggard cut |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for b in bins:
        r = run(b, pairs=pairs)
        for kind, pre in (("never reads", ""), ("reads 320 KiB/s", "trickle_")):
            print(f"| {b} | {kind} | {r['base_rate']:,.0f} | {r[pre + 'stalled_rate']:,.0f} "
                  f"| {r[pre + 'ratio']:.3f} "
                  f"| {' '.join(f'{x:.2f}' for x in r[pre + 'ratios'])} "
                  f"| {r[pre + 'min_ratio']:.3f} "
                  f"| {r['base_peak_rss_mib']:.1f} / {r[pre + 'peak_rss_mib']:.1f} "
                  f"| {r[pre + 'stalled_cut']} |", flush=True)
            print(f"  {b} {kind}, healthy msgs/s each second: "
                  + " ".join(f"{x:,.0f}" for x in r[pre + "per_second"]), file=sys.stderr)
        print(f"  {b} alone, healthy msgs/s each second: "
              + " ".join(f"{x:,.0f}" for x in r["base_per_second"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
