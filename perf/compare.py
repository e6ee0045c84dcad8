#!/usr/bin/env python3
"""Side-by-side performance comparison: tern vs nats-server.

Runs each scenario against a fresh server process per run, alternating
A (tern) / B (nats-server) for N pairs, and reports medians:

  msgs/sec           from tern-bench's report (published + delivered per second)
  CPU ns/msg         server utime+stime (/proc/PID/stat) over the load phase,
                     divided by messages delivered (or published if no subscribers)
  peak RSS MiB       server VmHWM (/proc/PID/status) after the run

Python 3.11 standard library only. Loopback only. See perf/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def repo_path(p: str) -> str:
    return p if os.path.isabs(p) else os.path.join(ROOT, p)


# ---------------------------------------------------------------- scenarios
# kind: pubsub (np, ns, ms, n), subjects (k, n, ms), idle, conns (c), latency (rate, secs, ms)
# quick: overrides for --quick.
SCENARIOS: dict[str, dict] = {
    "a": dict(kind="pubsub", np=1, ns=0, ms=16, n=5_000_000, quick=dict(n=500_000),
              title="a. 1 pub, 0 sub, 16 B"),
    "b": dict(kind="pubsub", np=1, ns=1, ms=128, n=1_000_000, quick=dict(n=200_000),
              title="b. 1 pub, 1 sub, 128 B"),
    "c": dict(kind="pubsub", np=10, ns=10, ms=128, n=1_000_000, quick=dict(n=100_000),
              title="c. 10 pub, 10 sub, 128 B"),
    "d": dict(kind="pubsub", np=10, ns=100, ms=1000, n=100_000, quick=dict(n=10_000),
              title="d. 10 pub, 100 sub, 1000 B"),
    "e": dict(kind="pubsub", np=10, ns=1000, ms=1000, n=10_000, quick=dict(n=1_000),
              title="e. 10 pub, 1000 sub, 1000 B"),
    "route": dict(kind="route", np=1, ns=1, ms=128, n=1_000_000, quick=dict(n=100_000),
                  title="route: pub on A, sub on B (2-node cluster), 128 B"),
    "idle": dict(kind="idle", title="idle server"),
    "conns": dict(kind="conns", c=10_000, quick=dict(c=2_000), title="10k idle conns"),
    "latency": dict(kind="latency", rate=5000, secs=5, ms=128, quick=dict(secs=2),
                    title="req/reply 5k/s"),
    # CPU per delivered message vs fan-out: 1 pub, 128 B, 2M deliveries each.
    "fan1": dict(kind="pubsub", np=1, ns=1, ms=128, n=2_000_000, quick=dict(n=200_000),
                 title="fan-out 1 sub"),
    "fan10": dict(kind="pubsub", np=1, ns=10, ms=128, n=200_000, quick=dict(n=20_000),
                  title="fan-out 10 subs"),
    "fan100": dict(kind="pubsub", np=1, ns=100, ms=128, n=20_000, quick=dict(n=2_000),
                   title="fan-out 100 subs"),
    "fan1000": dict(kind="pubsub", np=1, ns=1000, ms=128, n=2_000, quick=dict(n=200),
                    title="fan-out 1000 subs"),
    # CPU per message vs number of distinct subjects subscribed (1 sub conn, 1 pub, 16 B).
    "subj10": dict(kind="subjects", k=10, n=2_000_000, ms=16, quick=dict(n=100_000),
                   title="10 subjects"),
    "subj10k": dict(kind="subjects", k=10_000, n=2_000_000, ms=16, quick=dict(n=100_000),
                    title="10k subjects"),
    "subj1M": dict(kind="subjects", k=1_000_000, n=2_000_000, ms=16, quick=dict(n=100_000),
                   title="1M subjects"),
    # JetStream (issues 11 and 12): both servers with -js -sd <fresh tmpdir>, file storage,
    # 128 B. Consumer and kv-get scenarios fill the stream first; only the reading is measured.
    "jspub": dict(kind="js", op="pub", n=500_000, ms=128, quick=dict(n=50_000),
                  title="js: async publish, 4096 PubAcks outstanding"),
    "jssync": dict(kind="js", op="sync", n=50_000, ms=128, quick=dict(n=5_000),
                   title="js: sync publish, one at a time"),
    "jspub_always": dict(kind="js", op="pub", n=200_000, ms=128, quick=dict(n=20_000),
                         tern_conf="sync_interval: always",
                         title="js: async publish, tern `sync_interval: always` vs nats-server default"),
    "jsreplay": dict(kind="js", op="replay", n=1_000_000, ms=128, quick=dict(n=100_000),
                     title="js: replay a full stream (ordered push consumer, flow control)"),
    "jspush": dict(kind="js", op="push", n=1_000_000, ms=128, quick=dict(n=100_000),
                   title="js: ephemeral push consumer, no acks"),
    "jspull": dict(kind="js", op="pull", n=500_000, ms=128, quick=dict(n=50_000),
                   title="js: durable pull consumer, explicit acks, batches of 100"),
    "jskvput": dict(kind="js", op="kvput", n=50_000, ms=128, quick=dict(n=5_000),
                    title="js: kv put, 1000 keys, one at a time"),
    "jskvget": dict(kind="js", op="kvget", n=50_000, ms=128, quick=dict(n=5_000),
                    title="js: kv get (DIRECT.GET), 1000 keys, one at a time"),
    "jskvput16": dict(kind="js", op="kvput", n=100_000, ms=128, c=16, quick=dict(n=10_000),
                      title="js: kv put, 1000 keys, 16 clients each one at a time"),
    "jskvget16": dict(kind="js", op="kvget", n=100_000, ms=128, c=16, quick=dict(n=10_000),
                      title="js: kv get (DIRECT.GET), 1000 keys, 16 clients each one at a time"),
    # The floor under the one-at-a-time scenarios above: PING/PONG round trips, no JetStream.
    # Server CPU here is what the kernel charges a server for being woken and waking its
    # client, per round trip; no one-at-a-time operation can cost less than it.
    "jsping": dict(kind="js", op="ping", n=50_000, ms=128, quick=dict(n=5_000),
                   title="floor: PING/PONG round trip, one at a time"),
    "jsping16": dict(kind="js", op="ping", n=100_000, ms=128, c=16, quick=dict(n=10_000),
                     title="floor: PING/PONG round trip, 16 clients each one at a time"),
    "jsrestart": dict(kind="jsrestart", n=10_000_000, ms=128, quick=dict(n=500_000), max_pairs=2,
                      title="js: stored msgs of 128 B (fill, stop, start again): restart time, RSS, first delivery"),
}
GROUPS = {
    "all": list(SCENARIOS),
    "fanout": ["fan1", "fan10", "fan100", "fan1000"],
    "subjects": ["subj10", "subj10k", "subj1M"],
    "js": ["jspub", "jssync", "jspub_always", "jsreplay", "jspush", "jspull", "jskvput", "jskvget",
           "jskvput16", "jskvget16", "jsping", "jsping16", "jsrestart"],
}

# figure key -> (label, lower_is_better)
FIGURES = {
    "rate": ("msgs/sec", False),
    "cpu": ("server CPU ns/msg", True),
    "cpu2": ("CPU ns/msg, both servers", True),
    "hwm": ("server peak RSS MiB", True),
    "idle_rss": ("RSS MiB", True),
    "accept_ms": ("accept time ms", True),
    "held_rss": ("RSS MiB while held", True),
    "cpu_conn": ("server CPU us/conn", True),
    "p50": ("p50 us", True),
    "p90": ("p90 us", True),
    "p99": ("p99 us", True),
    "cpu_req": ("server CPU us/req", True),
    "sub_ms": ("subscribe time ms", True),
    "disk": ("bytes on disk per msg", True),
    "fill_rate": ("fill msgs/sec (async publish)", False),
    "stored_mib": ("store MiB on disk", True),
    "ready_ms": ("restart: start to STREAM.INFO ms", True),
    "rss_stored": ("RSS MiB after restart", True),
    "hwm_fill": ("peak RSS MiB while filling", True),
    "first_ms": ("CONSUMER.CREATE to first delivery ms", True),
}
KIND_FIGURES = {
    "pubsub": ["rate", "cpu", "hwm"],
    "route": ["rate", "cpu2"],
    "subjects": ["rate", "cpu", "sub_ms", "hwm"],
    "idle": ["idle_rss"],
    "conns": ["accept_ms", "held_rss", "cpu_conn"],
    "latency": ["p50", "p90", "p99", "cpu_req"],
    "js": ["rate", "cpu", "hwm", "disk"],
    "jsrestart": ["fill_rate", "stored_mib", "hwm_fill", "ready_ms", "rss_stored", "first_ms"],
}


class RunError(Exception):
    pass


# ---------------------------------------------------------------- process control
LIVE: list[subprocess.Popen] = []


def kill_all() -> None:
    for p in list(LIVE):
        stop_proc(p)


def stop_proc(p: subprocess.Popen, grace: float = 3.0) -> None:
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        except ProcessLookupError:
            pass
    if p in LIVE:
        LIVE.remove(p)


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def raise_nofile(want: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass
    target = hard if hard != resource.RLIM_INFINITY else max(soft, want)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])  # kB
    return out


class Server:
    def __init__(self, binary: str, logdir: str, tag: str, extra: list[str] | None = None,
                 wait: bool = True, port: int | None = None):
        self.port = port or free_port()
        self.log_path = os.path.join(logdir, f"{tag}-{self.port}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port)] + (extra or []),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        LIVE.append(self.proc)
        self.pid = self.proc.pid
        self.url = f"nats://127.0.0.1:{self.port}"
        if wait:
            self._wait_ready()

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RunError(f"server exited with {self.proc.returncode} at start: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RunError(f"server not accepting on port {self.port} after {timeout}s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> dict[str, int]:
        if not self.alive():
            raise RunError(f"server died (exit {self.proc.returncode}): {self.log_tail()}")
        return proc_status(self.pid)

    def log_tail(self, n: int = 5) -> str:
        try:
            self.log.flush()
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return " | ".join(lines[-n:])
        except OSError:
            return ""

    def stop(self, grace: float = 3.0) -> None:
        stop_proc(self.proc, grace)
        self.log.close()


# ---------------------------------------------------------------- one run
def run_bench(bench: str, args: list[str], timeout: float) -> str:
    cmd = [bench] + args
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    LIVE.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_proc(p)
        raise RunError(f"tern-bench timed out after {timeout}s: {shlex.join(cmd)}")
    finally:
        if p in LIVE:
            LIVE.remove(p)
    if p.returncode != 0:
        msg = (err.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        raise RunError(f"{msg}  [{shlex.join(cmd)}]")
    return out


def grab(pattern: str, text: str, what: str) -> re.Match:
    m = re.search(pattern, text, re.M)
    if not m:
        raise RunError(f"could not find {what} in tern-bench output:\n{text}")
    return m


def num(s: str) -> float:
    return float(s.replace(",", ""))


def bench_args(spec: dict, url: str) -> list[str]:
    """tern-bench arguments for a scenario (without -pid); used by --bench-args (flamegraph.sh)."""
    kind = spec["kind"]
    if kind == "pubsub":
        return ["-s", url, "-np", str(spec["np"]), "-ns", str(spec["ns"]),
                "-n", str(spec["n"]), "-ms", str(spec["ms"]), "foo"]
    if kind == "subjects":
        return ["subjects", "-s", url, "-k", str(spec["k"]), "-n", str(spec["n"]), "-ms", str(spec["ms"])]
    if kind == "conns":
        return ["conns", "-s", url, "-c", str(spec["c"])]
    if kind == "js":
        clients = ["-c", str(spec["c"])] if "c" in spec else []
        return ["js", "-s", url, "-op", spec["op"], "-n", str(spec["n"]), "-ms", str(spec["ms"])] + clients
    if kind == "latency":
        return ["latency", "-s", url, "-rate", str(spec["rate"]), "-d", str(spec["secs"]), "-ms", str(spec["ms"])]
    return []


def cpu_ns(pid: int) -> int:
    """utime+stime of a process in ns (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def route_run(spec: dict, binary: str, logdir: str, label: str, bench: str) -> dict[str, float]:
    """Two nodes of `binary` in a cluster; publishers on A, subscribers on B."""
    ca, cb = free_port(), free_port()
    a = Server(binary, logdir, label + "-A", ["--cluster", f"nats://127.0.0.1:{ca}", "--cluster_name", "bench"])
    b = None
    try:
        b = Server(binary, logdir, label + "-B", ["--cluster", f"nats://127.0.0.1:{cb}", "--cluster_name", "bench",
                                                  "--routes", f"nats://127.0.0.1:{ca}"])
        before = cpu_ns(a.pid) + cpu_ns(b.pid)
        out = run_bench(bench, ["-s", a.url, "-sub_s", b.url, "-np", str(spec["np"]), "-ns", str(spec["ns"]),
                                "-n", str(spec["n"]), "-ms", str(spec["ms"]), "foo"], timeout=600)
        after = cpu_ns(a.pid) + cpu_ns(b.pid)
        for srv in (a, b):
            if not srv.alive():
                raise RunError(f"server died during the run: {srv.log_tail()}")
        m = grab(r"^Pub/Sub stats: ([\d,]+) msgs/sec", out, "Pub/Sub stats")
        t = grab(r"^Totals: published=(\d+) delivered=(\d+)", out, "Totals")
        return {"rate": num(m.group(1)), "cpu2": (after - before) / max(1, int(t.group(2)))}
    finally:
        a.stop()
        if b:
            b.stop()


def disk_bytes(path: str) -> int:
    """Bytes allocated on disk under `path` (st_blocks, as du counts them)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def js_server(binary: str, logdir: str, label: str, store: str, spec: dict, wait: bool = True,
              port: int | None = None) -> Server:
    """`-js -sd <store>`; tern gets `jetstream { ... }` from a config file when the scenario sets
    `tern_conf` (nats-server keeps its defaults: that is the comparison asked for)."""
    extra = ["-js", "-sd", store]
    conf = spec.get("tern_conf")
    if conf and label == "tern":
        path = os.path.join(logdir, f"tern-js-{os.getpid()}.conf")
        with open(path, "w") as f:
            f.write(f'jetstream {{\n  store_dir: "{store}"\n  {conf}\n}}\n')
        extra = ["-c", path]
    return Server(binary, logdir, label, extra, wait=wait, port=port)


def js_run(spec: dict, binary: str, logdir: str, label: str, bench: str) -> dict[str, float]:
    """One JetStream run on a fresh store directory (removed afterwards)."""
    import shutil
    store = tempfile.mkdtemp(prefix="tern-compare-js-")
    server = None
    try:
        server = js_server(binary, logdir, label, store, spec)
        if spec["kind"] == "jsrestart":
            return js_restart(spec, binary, logdir, label, bench, server, store)
        out = run_bench(bench, bench_args(spec, server.url) + ["-pid", str(server.pid)], timeout=900)
        r: dict[str, float] = {}
        r["rate"] = num(grab(r"^JS .* stats: ([\d,]+) msgs/sec", out, "JS stats").group(1))
        ops = int(grab(r"^Totals: ops=(\d+)", out, "Totals").group(1))
        cpu = int(grab(r"^Server CPU: (\d+) ns", out, "Server CPU").group(1))
        r["cpu"] = cpu / max(1, ops)
        r["hwm"] = server.status()["VmHWM"] / 1024
        server.stop(grace=30)
        if spec["op"] in ("pub", "sync"):
            r["disk"] = disk_bytes(store) / max(1, ops)
        return r
    finally:
        if server:
            server.stop(grace=30)
        shutil.rmtree(store, ignore_errors=True)


def js_restart(spec: dict, binary: str, logdir: str, label: str, bench: str, server: Server,
               store: str) -> dict[str, float]:
    """Fill N messages, stop, start again on the same store: time until STREAM.INFO answers,
    RSS then, and time from a consumer's CREATE to its first delivery."""
    r: dict[str, float] = {}
    out = run_bench(bench, ["js", "-s", server.url, "-op", "fill", "-n", str(spec["n"]),
                            "-ms", str(spec["ms"]), "-timeout", "60"], timeout=1800)
    m = grab(r"^Filled (\d+) msgs in ([\d.]+)s", out, "Filled")
    r["fill_rate"] = int(m.group(1)) / float(m.group(2))
    r["hwm_fill"] = server.status()["VmHWM"] / 1024
    server.stop(grace=60)
    r["stored_mib"] = disk_bytes(store) / 1048576
    since = time.time_ns()
    again = js_server(binary, logdir, label + "-restart", store, spec, wait=False)
    try:
        out = run_bench(bench, ["js", "-s", again.url, "-op", "ready", "-since", str(since)], timeout=180)
        m = grab(r"^Ready: ([\d.]+) ms from start to STREAM.INFO \(messages (\d*)\)", out, "Ready")
        if m.group(2) != str(spec["n"]):
            raise RunError(f"after the restart the stream holds {m.group(2)!r} messages, not {spec['n']}")
        r["ready_ms"] = float(m.group(1))
        time.sleep(0.2)
        r["rss_stored"] = again.status()["VmRSS"] / 1024
        out = run_bench(bench, ["js", "-s", again.url, "-op", "first", "-timeout", "60"], timeout=180)
        r["first_ms"] = float(grab(r"^First delivery: ([\d.]+) ms", out, "First delivery").group(1))
        return r
    finally:
        again.stop(grace=30)


def one_run(spec: dict, server: Server, bench: str) -> dict[str, float]:
    kind = spec["kind"]
    pid = str(server.pid)
    r: dict[str, float] = {}
    if kind == "idle":
        time.sleep(0.5)
        r["idle_rss"] = server.status()["VmRSS"] / 1024
        return r
    if kind == "pubsub" or kind == "subjects":
        out = run_bench(bench, bench_args(spec, server.url) + ["-pid", pid], timeout=600)
        m = re.search(r"^Pub/Sub stats: ([\d,]+) msgs/sec", out, re.M) or \
            grab(r"^Pub stats: ([\d,]+) msgs/sec", out, "Pub stats")
        r["rate"] = num(m.group(1))
        t = grab(r"^Totals: published=(\d+) delivered=(\d+)", out, "Totals")
        published, delivered = int(t.group(1)), int(t.group(2))
        cpu = int(grab(r"^Server CPU: (\d+) ns", out, "Server CPU").group(1))
        r["cpu"] = cpu / max(1, delivered or published)
        if kind == "subjects":
            r["sub_ms"] = num(grab(r"^Setup \(connect \+ subscribe \d+ subjects\): ([\d.]+) ms", out, "Setup").group(1))
        r["hwm"] = server.status()["VmHWM"] / 1024
        return r
    if kind == "conns":
        cmd = [bench] + bench_args(spec, server.url) + ["-pid", pid]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        LIVE.append(p)
        try:
            lines = []
            deadline = time.monotonic() + 180
            while True:
                line = p.stdout.readline()
                if not line:
                    err = p.stderr.read().strip().splitlines()
                    raise RunError((err or ["tern-bench conns exited early"])[-1] + f"  [{shlex.join(cmd)}]")
                lines.append(line)
                if line.startswith("READY"):
                    break
                if time.monotonic() > deadline:
                    raise RunError("tern-bench conns: no READY within 180s")
            time.sleep(0.3)
            st = server.status()
            out = "".join(lines)
            m = grab(r"^Connected ([\d,]+) conns in ([\d.]+) ms", out, "Connected")
            r["accept_ms"] = num(m.group(2))
            r["held_rss"] = st["VmRSS"] / 1024
            cpu = int(grab(r"^Server CPU: (\d+) ns", out, "Server CPU").group(1))
            r["cpu_conn"] = cpu / 1000 / spec["c"]
            rest, err = p.communicate(input="", timeout=60)  # closes stdin: bench releases the conns
            if p.returncode != 0:
                raise RunError((err.strip().splitlines() or ["conns failed"])[-1])
        finally:
            stop_proc(p)
        return r
    if kind == "latency":
        out = run_bench(bench, bench_args(spec, server.url) + ["-pid", pid], timeout=spec["secs"] + 120)
        m = grab(r"^Latency \(us\): p50 ([\d.]+) \| p90 ([\d.]+) \| p99 ([\d.]+)", out, "Latency")
        r["p50"], r["p90"], r["p99"] = num(m.group(1)), num(m.group(2)), num(m.group(3))
        cpu = int(grab(r"^Server CPU: (\d+) ns", out, "Server CPU").group(1))
        r["cpu_req"] = cpu / 1000 / (spec["rate"] * spec["secs"])
        return r
    raise ValueError(kind)


# ---------------------------------------------------------------- report
def fmt(v: float | None) -> str:
    if v is None:
        return "FAIL"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def machine_info() -> list[str]:
    model, cores = "?", 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("processor"):
                    cores += 1
    except OSError:
        pass
    u = platform.uname()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return [f"- Machine: {cores} cores ({model}){mem}; kernel {u.system} {u.release} {u.machine}"]


def busy_cpus(interval: float = 1.0) -> float:
    """CPUs' worth of time spent busy (not idle/iowait/steal) over `interval`, machine-wide."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4] + (v[7] if len(v) > 7 else 0)
        return sum(v[:8]), idle
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    ncpu = os.cpu_count() or 1
    return ncpu * (1 - (i1 - i0) / max(1, t1 - t0))


def version_of(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5)
        s = (out.stdout or out.stderr).strip().splitlines()
        return s[0] if s and out.returncode == 0 else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description="tern vs nats-server side-by-side comparison")
    ap.add_argument("--quick", action="store_true", help="smaller loads, 1 pair (smoke test)")
    ap.add_argument("--scenarios", default="all",
                    help="comma list of: " + ",".join(SCENARIOS) + " or groups all,fanout,subjects")
    ap.add_argument("--pairs", type=int, default=None, help="A/B pairs per scenario (default 5, quick 1)")
    ap.add_argument("--out", help="also write the markdown report to this file")
    ap.add_argument("--bench-args", metavar="SCENARIO",
                    help="print the tern-bench arguments of SCENARIO for --url and exit (used by flamegraph.sh)")
    ap.add_argument("--url", default="nats://127.0.0.1:4222", help="server URL for --bench-args")
    a = ap.parse_args()
    if a.bench_args:
        if a.bench_args not in SCENARIOS:
            ap.error(f"unknown scenario {a.bench_args!r}")
        spec = dict(SCENARIOS[a.bench_args])
        if a.quick:
            spec.update(spec.get("quick", {}))
        args = bench_args(spec, a.url)
        if spec["kind"] == "conns":
            args += ["-hold", "1"]
        print(shlex.join(args))
        return 0

    names: list[str] = []
    for s in a.scenarios.split(","):
        s = s.strip()
        if not s:
            continue
        if s in GROUPS:
            names += GROUPS[s]
        elif s in SCENARIOS:
            names.append(s)
        else:
            ap.error(f"unknown scenario {s!r}")
    names = list(dict.fromkeys(names))
    pairs = a.pairs or (1 if a.quick else 5)

    tern = repo_path(os.environ.get("TERN_BIN", "target/x86_64-unknown-linux-gnu/release/tern"))
    nats = repo_path(os.environ.get("NATS_SERVER", "/usr/sbin/nats-server"))
    bench = repo_path(os.environ.get("TERN_BENCH", "perf/bench/target/release/tern-bench"))
    for label, path in (("TERN_BIN", tern), ("NATS_SERVER", nats), ("tern-bench", bench)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            hint = " (build it: cargo build --release --manifest-path perf/bench/Cargo.toml)" if label == "tern-bench" else ""
            print(f"compare.py: {label} not found or not executable: {path}{hint}", file=sys.stderr)
            return 2
    nofile = raise_nofile()
    if any(SCENARIOS[n]["kind"] == "conns" for n in names) and nofile < 12000:
        print(f"compare.py: warning: RLIMIT_NOFILE is {nofile}; the conns scenario needs > 10,000", file=sys.stderr)

    background = busy_cpus()
    if background > 0.2:
        print(f"compare.py: WARNING: the machine is already busy ({background:.2f} CPUs in use before "
              f"starting); results will be noisy", file=sys.stderr)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    slots = [("tern", tern), ("nats-server", nats)]
    results: dict[str, dict[str, list[dict]]] = {n: {"tern": [], "nats-server": []} for n in names}
    failures: dict[str, dict[str, str]] = {n: {} for n in names}
    logdir = tempfile.mkdtemp(prefix="tern-compare-")
    t_start = time.monotonic()
    timings: dict[str, float] = {n: 0.0 for n in names}
    total_runs = len(names) * pairs * 2
    k = 0
    try:
        for name in names:
            spec = dict(SCENARIOS[name])
            if a.quick:
                spec.update(spec.get("quick", {}))
            for pair in range(min(pairs, spec.get("max_pairs", pairs))):
                for label, binary in slots:
                    k += 1
                    if label in failures[name]:
                        continue  # already failed on this server: don't repeat time-outs
                    t0 = time.monotonic()
                    server = None
                    try:
                        if spec["kind"] == "route":
                            r = route_run(spec, binary, logdir, label, bench)
                        elif spec["kind"] in ("js", "jsrestart"):
                            r = js_run(spec, binary, logdir, label, bench)
                        else:
                            server = Server(binary, logdir, label)
                            r = one_run(spec, server, bench)
                            if not server.alive():
                                raise RunError(f"server died during the run: {server.log_tail()}")
                        results[name][label].append(r)
                        summary = ", ".join(f"{FIGURES[f][0]} {fmt(v)}" for f, v in r.items())
                    except RunError as e:
                        failures[name][label] = str(e)
                        summary = f"FAILED: {e}"
                        print(f"\nERROR: scenario {name} on {label}: {e}\n", file=sys.stderr, flush=True)
                    finally:
                        if server:
                            server.stop()
                    dt = time.monotonic() - t0
                    timings[name] += dt
                    print(f"[{k}/{total_runs}] {name:8} {label:11} pair {pair + 1}/{pairs} {dt:6.1f}s  {summary}",
                          file=sys.stderr, flush=True)
    except KeyboardInterrupt as e:
        print(f"\ncompare.py: interrupted ({e}); servers stopped", file=sys.stderr)
        kill_all()
        return 130
    finally:
        kill_all()
    elapsed = time.monotonic() - t_start

    # -------- markdown
    md: list[str] = []
    cmd = " ".join(shlex.quote(x) for x in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    env = f"TERN_BIN={shlex.quote(os.environ.get('TERN_BIN', 'target/x86_64-unknown-linux-gnu/release/tern'))} "
    if "NATS_SERVER" in os.environ:
        env += f"NATS_SERVER={shlex.quote(os.environ['NATS_SERVER'])} "
    md.append("# tern vs nats-server")
    md.append("")
    md.append(f"- Command: `{env}python3 {cmd}`")
    md.append(f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    md += machine_info()
    md.append(f"- Background load before the run: {background:.2f} CPUs busy")
    md.append(f"- Servers: tern = `{tern}` ({version_of(tern)}); nats-server = `{nats}` ({version_of(nats)})")
    md.append(f"- Method: a fresh server per run, A/B alternating, {pairs} pair(s) per scenario, "
              f"medians shown{' (QUICK mode: reduced loads)' if a.quick else ''}; loopback; "
              f"total {elapsed / 60:.1f} min")
    md.append("")
    md.append("| scenario | figure | tern | nats-server | ratio (tern/nats-server) |")
    md.append("| --- | --- | ---: | ---: | ---: |")
    for name in names:
        spec = dict(SCENARIOS[name])
        if a.quick:
            spec.update(spec.get("quick", {}))
        title = spec["title"]
        if spec["kind"] in ("pubsub", "subjects", "js", "jsrestart"):
            title += f", {spec['n']:,} msgs"
        for f in KIND_FIGURES[spec["kind"]]:
            label, lower = FIGURES[f]
            vals = {}
            for slot in ("tern", "nats-server"):
                xs = [r[f] for r in results[name][slot] if f in r]
                vals[slot] = statistics.median(xs) if xs and slot not in failures[name] else None
            t, n = vals["tern"], vals["nats-server"]
            if not any(f in r for slot in ("tern", "nats-server") for r in results[name][slot]) \
                    and not failures[name]:
                continue  # a figure this scenario does not have (disk use of a consumer run)
            ratio = f"{t / n:.2f}" if t is not None and n else "n/a"
            arrow = "lower is better" if lower else "higher is better"
            md.append(f"| {title} | {label} ({arrow}) | {fmt(t)} | {fmt(n)} | {ratio} |")
    md.append("")
    curves = [("fan-out", ["fan1", "fan10", "fan100", "fan1000"]), ("subjects", ["subj10", "subj10k", "subj1M"])]
    for cname, pts in curves:
        pts = [p for p in pts if p in names]
        if len(pts) < 2:
            continue
        md.append(f"Scaling, server CPU ns per delivered message vs {cname} ({' → '.join(pts)}):")
        md.append("")
        for slot in ("tern", "nats-server"):
            vals = []
            for p in pts:
                xs = [r["cpu"] for r in results[p][slot]]
                vals.append(statistics.median(xs) if xs and slot not in failures[p] else None)
            first = vals[0]
            cells = [f"{fmt(v)}" + (f" (x{v / first:.2f})" if v is not None and first else "") for v in vals]
            md.append(f"- {slot}: " + " → ".join(cells))
        md.append("")
    failed = [(n, s, e) for n in names for s, e in failures[n].items()]
    if failed:
        md.append("Failures:")
        md.append("")
        for n, s, e in failed:
            md.append(f"- {n} on {s}: {e}")
        md.append("")
    md.append("Time per scenario (both servers, all pairs): " +
              ", ".join(f"{n} {timings[n]:.0f}s" for n in names))
    md.append("")
    text = "\n".join(md)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if failed:
        print(f"compare.py: {len(failed)} scenario run(s) FAILED (see above); server logs in {logdir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
