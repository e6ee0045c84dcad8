#!/usr/bin/env python3
"""Capture (or check) the JetStream API fixtures against a live server.

Each fixture file (proto-tests/jetstream/*.txt) is a script of requests and the replies
nats-server 2.9.10 gave to them, normalised. `src/jetstream/api` replays the same scripts
through `api::handle` in its unit tests; this script regenerates the expected replies from
the reference server, or (with --check) replays them on the wire against any server
(`--server-bin target/debug/tern` once JetStream is wired into the loop).

    python3 proto-tests/jetstream/capture.py                 # rewrite every fixture's WANT lines
    python3 proto-tests/jetstream/capture.py --check         # compare, print differences, exit 1
    python3 proto-tests/jetstream/capture.py --check --tern --server-bin target/debug/tern
    python3 proto-tests/jetstream/capture.py --check --reference --jobs 4   # as make test does

`--reference` checks against NATS_SERVER (default /usr/sbin/nats-server) and skips when it is
missing, unless TERN_REQUIRE_REFERENCE is set (CI): then a missing reference fails. `--jobs N`
runs N fixtures side by side, each with a server of its own.

Format (one record per block, blank lines separate records, `#` starts a comment line):

    SERVER max_file_store=100000 max_memory_store=50000      (file header: server limits)
    ACCOUNT A a:a max_mem=1000 max_file=2000 max_streams=3   (file header: an account, its
                                                              user:password and limits, or
                                                              `enabled` / `disabled`)
    REQ <subject>          an API request (reply compared as normalised JSON)
    PUB <subject>          a publish with a reply subject (reply compared byte for byte)
    HDR <Name>: <value>    a header line (zero or more)
    BODY <text>            the payload (absent: empty); BODYJ "<json string>" for odd bytes;
                           @repeat(c,n) anywhere in BODY/HDR expands to n copies of c
    WANT <text>            the reply payload
    WANT-HDR <text>        the reply's header block (\\r\\n written as the four characters)
    WANT-NONE              no reply at all (within QUIET seconds)
    TERN <path> <json>     a known difference: tern answers <json> at <path> (e.g.
                           `.state.first_ts`) where nats-server answers WANT's value;
                           applied by the unit replay and by --check --tern
    CONNECT <user>         switch to that account's connection (CONNECT - : the default one)
    SUB <subject> [group]  subscribe the connection (deliver subjects, advisories)
    UNSUB <subject>        drop that subscription
    NEXT <stream> <consumer> <reply>   a pull request (BODY) with that reply subject (SUB
                           it first to see what comes back)
    ACK <k> [+]            publish BODY to the reply subject of the k-th message received
                           (1-based, over the whole script); `+` adds reply _INBOX.ack<k>
    FC <k>                 answer the flow control request that was the k-th message
    RECV                   everything received since the last RECV (within QUIET seconds
                           of silence): GOT lines, one JSON object per message:
                           {"sub":..,"subject":..,"reply":..,"hdr":..,"data":..}
    SLEEP <ms>             wait (the unit replay advances its clock instead)
    RESTART                restart the server on the same store directory

Normalisation: JSON values of `created`, `first_ts`, `last_ts`, `time`, `last_active` and
`timestamp` that are not Go's zero time become "<ts>"; in GOT lines (sorted by subscription, stably) the timestamp token of an ack reply
becomes <ts> and a generated consumer name in it <eph>,
the 4 random characters of a flow control reply become <fc>, advisories' `id` <id>, and
data over 200 bytes `<N bytes>`;
a `Nats-Time-Stamp` header value
becomes <ts>, the random part of `Nats-Consumer-Stalled` <fc>; the generated name of a legacy ephemeral consumer becomes "<eph>".
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUIET = 0.4
PATIENCE = 5.0
ZERO_TS = "0001-01-01T00:00:00Z"
TS_KEYS = ("created", "first_ts", "last_ts", "time", "last_active", "timestamp")


def expand(text):
    return re.sub(r"@repeat\((.),(\d+)\)", lambda m: m.group(1) * int(m.group(2)), text)


# ----------------------------------------------------------------------------------------
# Fixture files


class Record:
    def __init__(self):
        self.op = None  # REQ, PUB, CONNECT, SLEEP, RESTART
        self.arg = ""
        self.hdrs = []
        self.body = b""
        self.body_line = None
        self.want = None  # ("json"|"raw", text) / ("none",) / ("hdr", hdrtext, text)
        self.comments = []
        self.tern = []  # (path, json value) known differences


def parse_fixture(path):
    header, records, cur, comments = [], [], None, []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for line in lines + [""]:
        if line.startswith("#"):
            comments.append(line)
            continue
        if not line.strip():
            if cur:
                records.append(cur)
                cur = None
            continue
        word, _, rest = line.partition(" ")
        if word in ("SERVER", "ACCOUNT") and cur is None and not records:
            header.extend(comments + [line])
            comments = []
            continue
        if word in ("REQ", "PUB", "CONNECT", "SLEEP", "RESTART", "SUB", "UNSUB", "NEXT", "ACK", "FC", "RECV"):
            if cur:
                records.append(cur)
            cur = Record()
            cur.op, cur.arg = word, rest
            cur.comments, comments = comments, []
        elif cur is None:
            raise SystemExit(f"{path}: line outside a record: {line!r}")
        elif word == "HDR":
            cur.hdrs.append(expand(rest))
        elif word == "BODY":
            cur.body, cur.body_line = expand(rest).encode(), line
        elif word == "BODYJ":
            cur.body, cur.body_line = json.loads(rest).encode(), line
        elif word == "WANT":
            cur.want = ("hdr", cur.want[1], rest) if cur.want and cur.want[0] == "hdr" else ("text", rest)
        elif word == "WANT-HDR":
            cur.want = ("hdr", rest, "")
        elif word == "WANT-NONE":
            cur.want = ("none",)
        elif word == "GOT":
            if not cur.want or cur.want[0] != "got":
                cur.want = ("got", [])
            cur.want[1].append(rest)
        elif word == "TERN":
            path, _, value = rest.partition(" ")
            cur.tern.append((path, value))
        else:
            raise SystemExit(f"{path}: unknown line {line!r}")
    if comments and not records:
        header.extend(comments)
    for r in records:
        if r.op == "RECV" and r.want is None:
            r.want = ("got", [])
    return header, records


def render_fixture(header, records):
    out = list(header)
    if header:
        out.append("")
    for r in records:
        out.extend(r.comments)
        out.append(f"{r.op} {r.arg}".rstrip())
        out.extend("HDR " + h for h in r.hdrs)
        if r.body_line is not None:
            out.append(r.body_line)
        out.extend(f"TERN {p} {v}" for p, v in r.tern)
        if r.want:
            if r.want[0] == "none":
                out.append("WANT-NONE")
            elif r.want[0] == "got":
                out.extend("GOT " + g for g in r.want[1])
            elif r.want[0] == "hdr":
                out.append("WANT-HDR " + r.want[1])
                out.append("WANT " + r.want[2])
            else:
                out.append("WANT " + r.want[1])
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# Normalisation


def norm_json_value(v):
    if isinstance(v, dict) and isinstance(v.get("config"), dict) and "stream_name" in v:
        # A legacy ephemeral consumer's generated name (its config carries no name).
        if "name" not in v["config"] and "durable_name" not in v["config"]:
            v = dict(v, name="<eph>")
    if isinstance(v, dict):
        return {k: ("<ts>" if k in TS_KEYS and isinstance(x, str) and x != ZERO_TS else norm_json_value(x))
                for k, x in v.items()}
    if isinstance(v, list):
        return [norm_json_value(x) for x in v]
    return v


def norm_text(text):
    """A JSON reply re-serialised compactly in its own key order (Go's), timestamps masked."""
    try:
        v = json.loads(text)
    except ValueError:
        return text
    if not isinstance(v, dict) or "type" not in v:
        return text  # PubAcks are compared byte for byte
    return json.dumps(norm_json_value(v), separators=(",", ":"), ensure_ascii=False)


def generated_name(name, script=""):
    """A server-generated ephemeral name: 8 letters and digits that the fixture's own text
    (`script`) does not name. (Both servers draw each character from 62, so one name in
    40 has no upper or no lower case letter: case alone cannot tell.)"""
    return len(name) == 8 and name.isascii() and name.isalnum() and name not in script


def norm_got(m, script=""):
    sub, subject, reply, hdr, data = m
    parts = reply.split(".")
    if reply.startswith("$JS.ACK.") and len(parts) == 9:
        parts[7] = "<ts>"
        if generated_name(parts[3], script):
            parts[3] = "<eph>"
        reply = ".".join(parts)
    if reply.startswith("$JS.FC.") and len(parts) == 5:
        parts[4] = "<fc>"
        reply = ".".join(parts)
    text = data.decode("utf-8", errors="replace")
    try:
        v = json.loads(text)
        if isinstance(v, dict) and "id" in v and "type" in v:
            v["id"] = "<id>"
            text = json.dumps(norm_json_value(v), separators=(",", ":"), ensure_ascii=False)
        elif len(data) > 200:
            text = f"<{len(data)} bytes>"
    except ValueError:
        if len(data) > 200:
            text = f"<{len(data)} bytes>"
    h = norm_hdr(hdr.decode("utf-8", errors="replace")) if hdr is not None else ""
    return json.dumps({"sub": sub, "subject": subject, "reply": reply, "hdr": h, "data": text},
                      separators=(",", ":"), ensure_ascii=False)


def norm_hdr(hdr):
    hdr = re.sub(r"Nats-Time-Stamp: [^\r]*", "Nats-Time-Stamp: <ts>", hdr)
    hdr = re.sub(r"(Nats-Consumer-Stalled: \$JS\.FC\.[^.\r]*\.[^.\r]*\.)[^\r]*", r"\1<fc>", hdr)
    return hdr.replace("\r\n", "\\r\\n")


# ----------------------------------------------------------------------------------------
# A raw NATS connection


class Conn:
    def __init__(self, port, user=None, password=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.n = 0
        self.got = []  # (sub, subject, reply, hdr, data) not taken by request()
        self.all = []  # every message received, for ACK <k>
        self.subs = {}  # sid -> subject
        self.sid = 1
        self.line(5)  # INFO
        c = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True, "protocol": 1}
        if user:
            c["user"], c["pass"] = user, password
        self.s.sendall(b"CONNECT " + json.dumps(c).encode() + b"\r\nSUB _INBOX.> 1\r\nPING\r\n")
        while True:
            l = self.line(5)
            if l is None or l.startswith(b"-ERR"):
                raise SystemExit(f"connect failed: {l!r}")
            if l == b"PONG":
                break

    def fill(self, timeout):
        self.s.settimeout(max(timeout, 0.001))
        try:
            d = self.s.recv(1 << 20)
        except socket.timeout:
            return False
        if not d:
            raise EOFError("server closed the connection")
        self.buf += d
        return True

    def line(self, timeout):
        deadline = time.time() + timeout
        while b"\r\n" not in self.buf:
            if not self.fill(deadline - time.time()):
                return None
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def take(self, n, timeout=5):
        deadline = time.time() + timeout
        while len(self.buf) < n + 2:
            if not self.fill(deadline - time.time()):
                raise EOFError("short message")
        d, self.buf = self.buf[:n], self.buf[n + 2:]
        return d

    def request(self, subject, hdrs, body, timeout):
        self.n += 1
        inbox = f"_INBOX.r{self.n}".encode()
        subj = subject.encode()
        if hdrs:
            h = ("NATS/1.0\r\n" + "".join(x + "\r\n" for x in hdrs) + "\r\n").encode()
            self.s.sendall(b"HPUB %s %s %d %d\r\n%s%s\r\n" % (subj, inbox, len(h), len(h) + len(body), h, body))
        else:
            self.s.sendall(b"PUB %s %s %d\r\n%s\r\n" % (subj, inbox, len(body), body))
        deadline = time.time() + timeout
        while True:
            l = self.line(deadline - time.time())
            if l is None:
                return None
            if l == b"PING":
                self.s.sendall(b"PONG\r\n")
                continue
            m = self.frame(l)
            if m and m[1] == inbox.decode():
                return (m[3], m[4])
            if m:
                self.keep(m)

    def frame(self, l):
        """A MSG/HMSG line and its payload: (sid, subject, reply, hdr, data), or None."""
        if l == b"PING":
            self.s.sendall(b"PONG\r\n")
            return None
        p = l.split(b" ")
        if p[0] == b"MSG":
            d = self.take(int(p[-1]))
            reply = p[3].decode() if len(p) == 5 else ""
            return (p[2].decode(), p[1].decode(), reply, None, d)
        if p[0] == b"HMSG":
            hl = int(p[-2])
            d = self.take(int(p[-1]))
            reply = p[3].decode() if len(p) == 6 else ""
            return (p[2].decode(), p[1].decode(), reply, d[:hl], d[hl:])
        if p[0] == b"-ERR":
            raise SystemExit(f"server error: {l!r}")
        return None

    def keep(self, m):
        sid, subject, reply, hdr, data = m
        sub = self.subs.get(sid, "_INBOX.>")
        rec = (sub, subject, reply, hdr, data)
        self.got.append(rec)
        self.all.append(rec)

    def sync(self):
        """PING/PONG: everything the server sent before is in got."""
        self.s.sendall(b"PING\r\n")
        while True:
            l = self.line(5)
            if l is None:
                raise SystemExit("no PONG")
            if l == b"PONG":
                return
            m = self.frame(l)
            if m:
                self.keep(m)

    def pub(self, subject, reply, body):
        r = b" " + reply.encode() if reply else b""
        self.s.sendall(b"PUB %s%s %d\r\n%s\r\n" % (subject.encode(), r, len(body), body))

    def subscribe(self, subject, group):
        self.sid += 1
        self.subs[str(self.sid)] = subject
        q = b" " + group.encode() if group else b""
        self.s.sendall(b"SUB %s%s %d\r\n" % (subject.encode(), q, self.sid))
        self.sync()

    def unsubscribe(self, subject):
        for sid, s in list(self.subs.items()):
            if s == subject:
                del self.subs[sid]
                self.s.sendall(b"UNSUB %s\r\n" % sid.encode())
        self.sync()

    def collect(self, quiet, expect=0):
        """Waits for QUIET seconds without a new message, returns what came since last time.
        With `expect` (checking a fixture), waits up to PATIENCE seconds for that many first:
        a server answering late (nats-server's 409s after a stream delete, on a loaded
        machine) is compared on what it sends, not on how fast; extras still count."""
        start = time.time()
        deadline = start + quiet
        while True:
            l = self.line(max(deadline - time.time(), 0.001))
            if l is None:
                if len(self.got) >= expect or time.time() > start + PATIENCE:
                    break
                deadline = time.time() + quiet
                continue
            m = self.frame(l)
            if m:
                self.keep(m)
                deadline = time.time() + quiet
        out, self.got = self.got, []
        return out


# ----------------------------------------------------------------------------------------
# The server


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def server_conf(header):
    """nats-server configuration text and the accounts' credentials from the header lines."""
    js, accounts, creds = [], [], {}
    for line in header:
        word, _, rest = line.partition(" ")
        if word == "SERVER":
            js += [kv.replace("=", ": ") for kv in rest.split()]
        elif word == "ACCOUNT":
            name, cred, *limits = rest.split()
            user, _, pw = cred.partition(":")
            creds[user] = pw
            if limits == ["enabled"]:
                jsv = "jetstream: enabled"
            elif limits == ["disabled"] or not limits:
                jsv = ""
            else:
                jsv = "jetstream { " + ", ".join(kv.replace("=", ": ") for kv in limits) + " }"
            users = f"users [{{user: {user}, password: {pw}}}]"
            accounts.append(f"  {name} {{ {jsv + ', ' if jsv else ''}{users} }}")
    text = "jetstream { " + ", ".join(js) + " }\n" if js else ""
    if accounts:
        text += "accounts {\n" + "\n".join(accounts) + "\n}\n"
    return text, creds


class Server:
    def __init__(self, binary, header, workdir):
        self.binary, self.workdir = binary, workdir
        self.sd = os.path.join(workdir, "sd")
        self.conf, self.creds = server_conf(header)
        self.proc = None
        self.conns = {}

    def start(self):
        self.port = free_port()
        args = [self.binary, "-js", "-sd", self.sd, "-p", str(self.port), "-a", "127.0.0.1"]
        if self.conf:
            path = os.path.join(self.workdir, "server.conf")
            with open(path, "w") as f:
                f.write(self.conf)
            args += ["-c", path]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.binary} exited with {self.proc.returncode} at start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"{self.binary} did not start")

    def conn(self, user):
        if user not in self.conns:
            self.conns[user] = Conn(self.port, user, self.creds.get(user)) if user else Conn(self.port)
        return self.conns[user]

    def stop(self):
        for c in self.conns.values():
            c.s.close()
        self.conns = {}
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def apply_tern(want, tern):
    """WANT with tern's known differences substituted."""
    if not tern or not want or want[0] != "text":
        return want
    v = json.loads(want[1])
    for path, value in tern:
        keys = path.strip(".").split(".")
        obj = v
        key = lambda o, k: int(k) if isinstance(o, list) else k
        for k in keys[:-1]:
            obj = obj[key(obj, k)]
        obj[key(obj, keys[-1])] = json.loads(value)
    return ("text", json.dumps(v, separators=(",", ":"), ensure_ascii=False))


def run_fixture(binary, path, check, tern=False, out=None):
    """Runs one fixture; returns its count of differences (printed, or appended to `out`)."""
    say = out.append if out is not None else print
    header, records = parse_fixture(path)
    with open(path, encoding="utf-8") as f:
        script = f.read()
    work = tempfile.mkdtemp(prefix="tern-jsfix-")
    srv = Server(binary, header, work)
    srv.start()
    user, diffs = None, 0
    default_user = next((l.split()[2].partition(":")[0] for l in header if l.startswith("ACCOUNT")), None)
    user = default_user
    try:
        for r in records:
            if r.op == "CONNECT":
                user = None if r.arg == "-" else r.arg
                continue
            if r.op == "SLEEP":
                time.sleep(int(r.arg) / 1000)
                continue
            if r.op == "RESTART":
                srv.stop()
                srv.start()
                continue
            if r.op in ("SUB", "UNSUB", "NEXT", "ACK", "FC", "RECV"):
                want = delivery_op(srv.conn(user), r, script)
                if want is None:
                    continue
                expected = r.want
                if check and want != expected:
                    diffs += 1
                    say(f"{os.path.basename(path)}: {r.op} {r.arg}\n  want {expected}\n  got  {want}")
                if not check:
                    r.want = want
                continue
            timeout = QUIET if r.want and r.want[0] == "none" else 2.0
            got = srv.conn(user).request(expand(r.arg), r.hdrs, r.body, timeout)
            want = capture_want(r, got)
            expected = apply_tern(r.want, r.tern) if tern else r.want
            if check and want != expected:
                diffs += 1
                say(f"{os.path.basename(path)}: {r.op} {r.arg}\n  want {expected}\n  got  {want}")
            if not check:
                r.want = want
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    if not check:
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_fixture(header, records))
    return diffs


def delivery_op(c, r, script=""):
    """Runs a SUB/UNSUB/NEXT/ACK/FC/RECV record; returns its WANT (RECV only)."""
    args = expand(r.arg).split()
    if r.op == "SUB":
        c.subscribe(args[0], args[1] if len(args) > 1 else "")
    elif r.op == "UNSUB":
        c.unsubscribe(args[0])
    elif r.op == "NEXT":
        c.pub(f"$JS.API.CONSUMER.MSG.NEXT.{args[0]}.{args[1]}", args[2], r.body)
        c.sync()
    elif r.op == "ACK":
        k = int(args[0])
        reply = f"_INBOX.ack{k}" if len(args) > 1 and args[1] == "+" else ""
        c.pub(c.all[k - 1][2], reply, r.body)
        c.sync()
    elif r.op == "FC":
        c.pub(c.all[int(args[0]) - 1][2], "", b"")
        c.sync()
    elif r.op == "RECV":
        # Deliveries to different subscriptions have no order between them.
        expect = len(r.want[1]) if r.want and r.want[0] == "got" else 0
        got = sorted((norm_got(m, script) for m in c.collect(QUIET, expect)), key=lambda g: json.loads(g)["sub"])
        return ("got", got)
    return None


def capture_want(r, got):
    if got is None:
        return ("none",)
    hdr, data = got
    text = data.decode("utf-8", errors="replace")
    if r.op == "REQ":
        text = norm_text(text)
    if hdr:
        return ("hdr", norm_hdr(hdr.decode("utf-8", errors="replace")), text)
    return ("text", text)


def reference_or_exit(binary):
    """The reference server for --reference: skipped (exit 0) when missing, unless
    TERN_REQUIRE_REFERENCE is set (CI), which makes a missing reference a failure."""
    if os.path.isfile(binary) and os.access(binary, os.X_OK):
        return binary
    required = os.environ.get("TERN_REQUIRE_REFERENCE", "") not in ("", "0")
    if required:
        print(f"TERN_REQUIRE_REFERENCE is set but the reference nats-server is missing ({binary}): "
              "install it (apt-get install nats-server) or point NATS_SERVER at it", file=sys.stderr)
        sys.exit(1)
    print(f"note: no reference nats-server at {binary}; the fixtures are not checked against it")
    sys.exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of rewriting")
    ap.add_argument("--server-bin", default=os.environ.get("NATS_SERVER") or "/usr/sbin/nats-server")
    ap.add_argument("--tern", action="store_true", help="expect tern's known differences (TERN lines)")
    ap.add_argument("--reference", action="store_true",
                    help="--server-bin is the reference: skip if missing (fail with TERN_REQUIRE_REFERENCE)")
    ap.add_argument("--jobs", type=int, default=1, help="fixtures run at the same time (--check only)")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    if a.reference:
        a.server_bin = reference_or_exit(a.server_bin)
    files = a.files or sorted(f for f in os.listdir(HERE) if f.endswith(".txt"))
    paths = [f if os.path.sep in f else os.path.join(HERE, f) for f in files]
    label = f"{os.path.basename(a.server_bin)}{' (TERN lines applied)' if a.tern else ''}"

    def one(path):
        out = []
        n = run_fixture(a.server_bin, path, a.check, a.tern, out)
        out.append(f"{os.path.basename(path)}: {'%d difference(s)' % n if a.check else 'captured'} [{label}]")
        return n, out

    diffs = 0
    jobs = max(1, a.jobs) if a.check else 1
    # Each fixture has a server of its own, so they can run side by side; most of a
    # fixture's time is spent waiting out QUIET and SLEEP.
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for n, out in pool.map(one, paths):
            print("\n".join(out), flush=True)
            diffs += n
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
