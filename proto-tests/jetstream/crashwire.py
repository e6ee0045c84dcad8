"""A small raw-protocol client and server runner for the JetStream crash and fault scripts.

No nats-py here on purpose: the scripts must see exactly which PubAcks and ack replies
arrived before a SIGKILL, and a client that reconnects and retries on its own would hide it.
"""

import atexit
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients"))
from server import Server  # noqa: E402  (proto-tests/clients/server.py)

HOST = "127.0.0.1"

# Every server start_server made: stopped when the script exits, however it exits.
STARTED = []


@atexit.register
def _stop_all():
    for srv in STARTED:
        try:
            srv.close()
        except Exception:
            pass


class Closed(Exception):
    """The server closed the connection (or was killed)."""


class Msg:
    __slots__ = ("subject", "sid", "reply", "hdr", "data")

    def __init__(self, subject, sid, reply, hdr, data):
        self.subject, self.sid, self.reply, self.hdr, self.data = subject, sid, reply, hdr, data

    def json(self):
        return json.loads(self.data)

    def status(self):
        """The status code of a header-only status message (b"408"...), or None."""
        if self.hdr and self.hdr.startswith(b"NATS/1.0 ") and len(self.hdr) >= 12:
            return self.hdr[9:12]
        return None


class Conn:
    """One client connection: CONNECT with headers and no_responders, then raw PUB/SUB."""

    def __init__(self, port, timeout=5.0, user=None):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.inbox = []
        self.info = json.loads(self._line()[5:])
        opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                "protocol": 1}
        if user:
            opts["user"], opts["pass"] = user
        self.send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        while True:
            line = self._line()
            if line == b"PONG":
                break
            if line.startswith(b"-ERR"):
                raise Closed(line.decode())
        self.sids = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Closed(str(e))

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except (socket.timeout, BlockingIOError):
            return False
        except OSError as e:
            raise Closed(str(e))
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk
        return True

    def _line(self, timeout=5.0):
        while b"\r\n" not in self.buf:
            if not self._fill(timeout):
                raise Closed("timeout waiting for a line")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def sub(self, subject, queue=None):
        self.sids += 1
        q = b" " + queue.encode() if queue else b""
        self.send(b"SUB %s%s %d\r\n" % (subject.encode(), q, self.sids))
        return self.sids

    def pub(self, subject, data=b"", reply=None, hdr=None):
        """PUB (or HPUB with `hdr`, a dict or the raw header block)."""
        r = b" " + reply.encode() if reply else b""
        if hdr is None:
            return b"PUB %s%s %d\r\n%s\r\n" % (subject.encode(), r, len(data), data)
        if isinstance(hdr, dict):
            hdr = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                                             for k, v in hdr.items()) + b"\r\n"
        return b"HPUB %s%s %d %d\r\n%s%s\r\n" % (subject.encode(), r, len(hdr),
                                                 len(hdr) + len(data), hdr, data)

    def publish(self, subject, data=b"", reply=None, hdr=None):
        self.send(self.pub(subject, data, reply, hdr))

    def _parse(self):
        """Move every complete message in the buffer to self.inbox."""
        while True:
            end = self.buf.find(b"\r\n")
            if end < 0:
                return
            line = self.buf[:end]
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                parts = line.split()
                hmsg = parts[0] == b"HMSG"
                size = int(parts[-1])
                hlen = int(parts[-2]) if hmsg else 0
                nfix = 4 if hmsg else 3
                reply = parts[3].decode() if len(parts) > nfix + 1 else None
                start = end + 2
                if len(self.buf) < start + size + 2:
                    return
                body = self.buf[start:start + size]
                self.buf = self.buf[start + size + 2:]
                self.inbox.append(Msg(parts[1].decode(), int(parts[2]), reply,
                                      body[:hlen] if hmsg else None, body[hlen:]))
                continue
            self.buf = self.buf[end + 2:]
            if line == b"PING":
                self.send(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise Closed(line.decode())

    def poll(self, timeout=0.0):
        """Read what is there and return the complete messages, waiting up to `timeout` for
        the first one. (Bytes alone are not enough: a read may end inside a message, and an
        empty answer means "nothing came" to the callers.)"""
        deadline = time.monotonic() + timeout
        while True:
            while self._fill(0):
                pass
            self._parse()
            left = deadline - time.monotonic()
            if self.inbox or left <= 0:
                break
            self._fill(left)
        out, self.inbox = self.inbox, []
        return out

    def request(self, subject, data=b"", timeout=5.0, hdr=None):
        """One request on a fresh inbox; returns the reply Msg or None on timeout."""
        self.sids += 1
        inbox = "_REQ.%d" % self.sids
        sid = self.sub(inbox)
        self.send(self.pub(subject, data, inbox, hdr) + b"UNSUB %d 1\r\n" % sid)
        deadline = time.monotonic() + timeout
        while True:
            self._parse()
            for k, m in enumerate(self.inbox):
                if m.subject == inbox:
                    del self.inbox[k]
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._fill(min(left, 0.2))

    def api(self, subject, body=None, timeout=5.0):
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        m = self.request(subject, data, timeout)
        if m is None:
            raise AssertionError(f"no reply to {subject} within {timeout}s")
        if m.status() == b"503":
            raise AssertionError(f"no responders for {subject}")
        return m.json()


def msg_get(conn, stream, seqs, window=256):
    """{seq: (subject, data)} for `seqs` by pipelined STREAM.MSG.GET; missing ones absent.

    Also returns the error codes seen, {seq: err_code}."""
    sid = conn.sub("_GET.*")
    seqs = list(seqs)
    found, errs = {}, {}
    i = 0
    outstanding = 0
    while i < len(seqs) or outstanding:
        batch = b""
        while i < len(seqs) and outstanding < window:
            s = seqs[i]
            batch += conn.pub(f"$JS.API.STREAM.MSG.GET.{stream}", b'{"seq":%d}' % s, f"_GET.{s}")
            i += 1
            outstanding += 1
        if batch:
            conn.send(batch)
        got = conn.poll(5.0)
        if not got and outstanding:
            raise AssertionError(f"MSG.GET replies stopped with {outstanding} outstanding")
        for m in got:
            if not m.subject.startswith("_GET."):
                continue
            outstanding -= 1
            s = int(m.subject[5:])
            j = m.json()
            if "error" in j:
                errs[s] = j["error"].get("err_code")
                continue
            msg = j["message"]
            found[s] = (msg["subject"], base64.b64decode(msg.get("data", "")))
    conn.send(b"UNSUB %d\r\n" % sid)
    return found, errs


def start_server(store, conf_text=None, port=None, extra=(), binary=None, wrap=()):
    """A started Server for `-js -sd store` (plus a config file) on `port` (or a free one)."""
    args = ["-js", "-sd", store] + list(extra)
    if conf_text is not None:
        path = store.rstrip("/") + ".conf"
        with open(path, "w") as f:
            f.write(conf_text)
        args += ["-c", path]
    srv = Server(args, binary=binary)
    if wrap:
        srv.args = lambda: list(wrap) + [srv.binary, "-a", HOST, "-p", str(srv.port)] + srv.extra_args
    STARTED.append(srv)
    return srv.start(port)


def kill9(srv):
    if srv.proc is not None and srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=10)
    srv.proc = None


def alive(srv):
    return srv.proc is not None and srv.proc.poll() is None


def wait_exit(srv, timeout=10):
    try:
        srv.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill9(srv)
