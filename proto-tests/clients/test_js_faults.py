# JetStream under faults (issues 11 and 12), on the raw protocol (proto-tests/jetstream/
# crashwire.py) so each reply is seen exactly: a segment whose tail is torn, corrupted or has
# garbage after it; a file size limit (prlimit --fsize: EFBIG, with SIGXFSZ), a full file
# system and one remounted read-only under the server (tmpfs; root only); an unusable store
# directory; acks to consumers that do not exist; pull requests with JSON the server cannot
# read. In each: a clear error to the publisher, the server keeps serving everyone else, and
# nothing already acknowledged is lost.

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "jetstream"))
from crashwire import Closed, Conn, alive, msg_get, start_server  # noqa: E402
from server import Server  # noqa: E402


def payload(i, size=200):
    return (b"%d:" % i + b"abcdefghij" * (size // 10 + 1))[:size]


class FaultCase(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="tern-faults-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.store = os.path.join(self.work, "sd")

    def conn(self, port):
        c = Conn(port)
        self.addCleanup(c.close)
        return c

    def start(self, **kw):
        srv = start_server(self.store, **kw)
        self.addCleanup(srv.close)
        return srv

    def create(self, c, name, subjects, **cfg):
        r = c.api(f"$JS.API.STREAM.CREATE.{name}", dict(name=name, subjects=subjects, **cfg))
        self.assertNotIn("error", r, r)
        return r

    def publish_n(self, c, subject, n, size=200, start=0):
        """Publishes with acks; returns {seq: payload}."""
        out = {}
        for i in range(start, start + n):
            m = c.request(subject, payload(i, size))
            self.assertIsNotNone(m, f"no PubAck for publish {i}")
            ack = m.json()
            self.assertNotIn("error", ack, ack)
            out[ack["seq"]] = payload(i, size)
        return out

    def check_messages(self, c, stream, want):
        found, errs = msg_get(c, stream, sorted(want))
        for seq, data in want.items():
            self.assertIn(seq, found, f"seq {seq} missing (err {errs.get(seq)})")
            self.assertEqual(found[seq][1], data, f"seq {seq} payload")

    def info(self, c, stream):
        r = c.api(f"$JS.API.STREAM.INFO.{stream}")
        self.assertNotIn("error", r, r)
        return r["state"]

    def core_pubsub_works(self, port):
        """Another client's plain publish and subscribe still work."""
        c = self.conn(port)
        sid = c.sub("core.check")
        c.publish("core.check", b"ping")
        c.send(b"PING\r\n")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(m.sid == sid and m.data == b"ping" for m in c.poll(0.2)):
                c.close()
                return
        self.fail("core publish/subscribe stopped working")


class TailRecovery(FaultCase):
    """The store's last segment damaged while the server is down (store layout:
    <sd>/jetstream/$G/streams/<name>/seg/NNNNNNNNNN.seg, records of `len u32 | kind u8 |
    seq u64 | ...` with the length first, src/jetstream/store/mod.rs)."""

    N = 100

    def prepare(self):
        srv = self.start()
        c = self.conn(srv.port)
        self.create(c, "T", ["t.>"])
        want = self.publish_n(c, "t.x", self.N)
        c.close()
        srv.stop()  # a clean stop; the active segment is read record by record anyway
        seg_dir = os.path.join(self.store, "jetstream", "$G", "streams", "T", "seg")
        segs = sorted(f for f in os.listdir(seg_dir) if f.endswith(".seg"))
        self.assertTrue(segs, os.listdir(seg_dir))
        return srv, want, os.path.join(seg_dir, segs[-1])

    def records(self, path):
        """[(offset, length, kind, seq)] of the records in a segment file."""
        with open(path, "rb") as f:
            data = f.read()
        out, off = [], 0
        while off + 13 <= len(data):
            ln, kind, seq = struct.unpack_from("<IBQ", data, off)
            if ln < 13 or off + ln > len(data):
                break
            out.append((off, ln, kind, seq))
            off += ln
        return out

    def msg_record(self, path, seq):
        for off, ln, kind, s in self.records(path):
            if kind & 0x0F == 1 and s == seq:
                return off, ln
        self.fail(f"no record for seq {seq} in {path}")

    def restart_and_check(self, srv, want, lost_seqs, gone=()):
        srv.start(srv.port)
        c = self.conn(srv.port)
        st = self.info(c, "T")
        lost = st.get("lost") or {}
        self.assertEqual(sorted(lost.get("msgs") or []), lost_seqs, st)
        if lost_seqs:
            self.assertGreater(lost.get("bytes", 0), 0, st)
        kept = {s: d for s, d in want.items() if s not in lost_seqs and s not in gone}
        self.assertEqual(st["messages"], len(kept), st)
        self.check_messages(c, "T", kept)
        # The stream takes new messages after the recovered ones.
        m = c.request("t.x", b"after")
        ack = m.json()
        self.assertEqual(ack.get("seq"), st["last_seq"] + 1, ack)
        self.check_messages(c, "T", {ack["seq"]: b"after"})
        c.close()
        return st

    def test_torn_last_record(self):
        srv, want, path = self.prepare()
        off, ln = self.msg_record(path, self.N)
        with open(path, "r+b") as f:
            f.truncate(off + ln // 2)
        self.restart_and_check(srv, want, [self.N])

    def test_corrupt_record_in_the_middle(self):
        srv, want, path = self.prepare()
        off, ln = self.msg_record(path, 50)
        with open(path, "r+b") as f:
            f.seek(off + ln - 20)
            b = f.read(1)
            f.seek(off + ln - 20)
            f.write(bytes([b[0] ^ 0xFF]))
        self.restart_and_check(srv, want, [50])

    def test_corrupt_tail_of_several_records(self):
        srv, want, path = self.prepare()
        off, _ = self.msg_record(path, 96)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(off + 30)
            f.write(b"\xa5" * (size - off - 30))
        # Record 96's header still reads, so its sequence is reported; 97..100 left no trace
        # (their bytes count in lost.bytes).
        st = self.restart_and_check(srv, want, [96], gone=[97, 98, 99, 100])
        self.assertEqual((st["last_seq"], st["messages"]), (96, 95))
        self.assertGreater(st["lost"]["bytes"], 4 * 200)

    def test_garbage_after_the_tail(self):
        srv, want, path = self.prepare()
        with open(path, "ab") as f:
            f.write(os.urandom(300))
        # Nothing acknowledged is lost; the garbage is cut off.
        self.restart_and_check(srv, want, [])

    def test_truncated_to_a_record_boundary(self):
        srv, want, path = self.prepare()
        off, _ = self.msg_record(path, 91)
        with open(path, "r+b") as f:
            f.truncate(off)
        srv.start(srv.port)
        c = self.conn(srv.port)
        st = self.info(c, "T")
        # Whole records gone leave no trace to report; what is there is intact.
        self.assertEqual((st["messages"], st["last_seq"]), (90, 90), st)
        self.check_messages(c, "T", {s: d for s, d in want.items() if s <= 90})
        c.close()


class StoreFaults(FaultCase):
    """Helpers for the tests where the store cannot write."""

    def fill(self, c, subject, size=4000, limit=2000):
        """Publishes until the first refusal; returns (acked {seq: payload}, the error)."""
        acked = {}
        for i in range(limit):
            m = c.request(subject, payload(i, size), timeout=5)
            self.assertIsNotNone(m, f"no reply to publish {i} (acked so far: {len(acked)})")
            ack = m.json()
            if "error" in ack:
                return acked, ack["error"]
            acked[ack["seq"]] = payload(i, size)
        self.fail(f"{limit} publishes of {size} bytes and no error")

    def check_refusal(self, err):
        self.assertEqual(err.get("code"), 503, err)
        self.assertEqual(err.get("err_code"), 10077, err)
        self.assertTrue(err.get("description"), err)

    def after_refusal(self, srv, c, acked):
        """The server lives, serves others, refuses cleanly again, and kept what it acked."""
        self.assertTrue(alive(srv), srv.log())
        m = c.request("f", b"x" * 4000)
        self.assertIn("error", m.json())
        self.create(c, "MEM", ["mem"], storage="memory")
        ack = c.request("mem", b"in memory").json()
        self.assertEqual(ack.get("seq"), 1, ack)
        self.core_pubsub_works(srv.port)
        self.assertEqual(self.info(c, "F")["messages"], len(acked))
        self.check_messages(c, "F", acked)

    def restart_unlimited(self, srv, acked):
        port = srv.port
        srv.stop()
        srv2 = Server(["-js", "-sd", self.store])
        self.addCleanup(srv2.close)
        srv2.start(port)
        c = self.conn(port)
        st = self.info(c, "F")
        self.assertEqual(st["messages"], len(acked), st)
        self.check_messages(c, "F", acked)
        ack = c.request("f", b"after").json()
        self.assertEqual(ack.get("seq"), max(acked) + 1, ack)
        c.close()


class FileSizeLimit(StoreFaults):
    @unittest.skipUnless(shutil.which("prlimit"), "prlimit (util-linux) not installed")
    def test_file_size_limit(self):
        # RLIMIT_FSIZE: a write past it fails with EFBIG, and raises SIGXFSZ, whose default
        # action kills the process; the server must ignore it and report the failed write.
        srv = self.start(wrap=("prlimit", "--fsize=1000000", "--"))
        c = self.conn(srv.port)
        self.create(c, "F", ["f"])
        try:
            acked, err = self.fill(c, "f")
        except Closed:
            self.fail(f"the server died at the file size limit (exit {srv.proc.poll()})")
        self.assertGreater(len(acked), 100)
        self.check_refusal(err)
        self.after_refusal(srv, c, acked)
        c.close()
        self.restart_unlimited(srv, acked)


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True)
    return r.returncode == 0


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("mount"), "needs root to mount a tmpfs")
class SmallFileSystem(StoreFaults):
    def setUp(self):
        super().setUp()
        self.mnt = os.path.join(self.work, "mnt")
        if not mount_tmpfs(self.mnt, "3m"):
            self.skipTest("cannot mount a tmpfs here")
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt])
        self.store = os.path.join(self.mnt, "sd")

    def test_no_space_left(self):
        # The default max_file_store is 3/4 of the free space (as nats-server), which would
        # refuse with 10023 before the disk is full: allow more than the disk has.
        srv = self.start(conf_text="jetstream { max_file_store: 1G }\n")
        c = self.conn(srv.port)
        self.create(c, "F", ["f"])
        acked, err = self.fill(c, "f")
        self.assertGreater(len(acked), 100)
        self.check_refusal(err)
        self.after_refusal(srv, c, acked)
        # Space comes back: publishing works again, after what was acked.
        r = c.api("$JS.API.STREAM.PURGE.MEM")
        subprocess.run(["mount", "-o", "remount,size=8m", self.mnt], check=True)
        ack = c.request("f", b"x" * 4000).json()
        self.assertEqual(ack.get("seq"), max(acked) + 1, (ack, r))
        acked[ack["seq"]] = b"x" * 4000
        c.close()
        self.restart_unlimited(srv, acked)

    def test_read_only_at_start(self):
        srv = self.start()
        c = self.conn(srv.port)
        self.create(c, "F", ["f"])
        acked = self.publish_n(c, "f", 50, size=4000)
        c.close()
        srv.stop()
        subprocess.run(["mount", "-o", "remount,ro", self.mnt], check=True)
        try:
            # As nats-server: JetStream does not start on a store it cannot write, and says
            # why (rather than skipping every stream, whose publishers would then get no
            # responders).
            p = subprocess.run([srv.binary, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd",
                                self.store], capture_output=True, timeout=10)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(b"not writable", p.stdout + p.stderr)
        finally:
            subprocess.run(["mount", "-o", "remount,rw", self.mnt], check=True)
        self.restart_unlimited(srv, acked)


@unittest.skipUnless(shutil.which("chattr"), "chattr (e2fsprogs) not installed")
class Unwritable(StoreFaults):
    """The segment file and its folder made immutable (chattr +i) under the running server:
    even root's writes fail (EPERM), as on a store gone read-only."""

    def chattr(self, flag, *paths):
        r = subprocess.run(["chattr", flag] + list(paths), capture_output=True)
        return r.returncode == 0

    def test_store_made_unwritable_while_running(self):
        srv = self.start()
        c = self.conn(srv.port)
        self.create(c, "F", ["f"])
        acked = self.publish_n(c, "f", 50, size=4000)
        seg = os.path.join(self.store, "jetstream", "$G", "streams", "F", "seg")
        files = [os.path.join(seg, f) for f in os.listdir(seg)]
        if not self.chattr("+i", *files, seg):
            self.skipTest("chattr +i not supported on this file system")
        try:
            m = c.request("f", b"x" * 4000)
            err = m.json().get("error")
            self.assertIsNotNone(err, m.json())
            self.check_refusal(err)
            self.after_refusal(srv, c, acked)
        finally:
            self.chattr("-i", *files, seg)
        # The failed write could not even be cut back, so the store stays read-only until a
        # restart (src/jetstream/store/mod.rs), still with a clear error.
        self.check_refusal(c.request("f", b"back").json()["error"])
        c.close()
        self.restart_unlimited(srv, acked)


class StoreDirUnusable(FaultCase):
    def test_store_dir_is_a_file(self):
        # -sd names a regular file: the server says so and does not start.
        path = os.path.join(self.work, "file")
        open(path, "w").close()
        p = subprocess.run([Server().binary, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd",
                            os.path.join(path, "sd")], capture_output=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"sd", p.stdout + p.stderr)


class HugeConfigs(FaultCase):
    def test_deep_nesting_many_subjects_and_overlap_pairs(self):
        srv = self.start()
        c = self.conn(srv.port)
        # Nesting a recursive reader would overflow its stack on: refused as invalid JSON.
        for body in [b'{"name":"X","subjects":' + b"[" * 300000 + b"]" * 300000 + b"}",
                     b'{"name":"X","metadata":' + b'{"a":' * 100000 + b"1" + b"}" * 100001,
                     b'{"stream_name":"X","config":' + b"[" * 300000 + b"}"]:
            r = c.api("$JS.API.STREAM.CREATE.X", body, timeout=20)
            self.assertEqual(r["error"]["err_code"], 10025, r)
        # Many subjects in one config (most of max_payload): stored, listed, matched.
        subjects = ["h.%d" % i for i in range(20000)]
        r = c.api("$JS.API.STREAM.CREATE.H", {"name": "H", "subjects": subjects}, timeout=20)
        self.assertEqual(len(r["config"]["subjects"]), 20000, r.get("error"))
        self.assertEqual(c.request("h.19999", b"x").json().get("seq"), 1)
        # Overlap checks between many wildcards stay bounded: an answer, not a stall.
        r = c.api("$JS.API.STREAM.CREATE.W",
                  {"name": "W", "subjects": ["w.%d.>" % i for i in range(20000)]}, timeout=20)
        self.assertTrue("error" in r or r["config"]["name"] == "W", r)
        self.core_pubsub_works(srv.port)
        c.close()


class AcksAndPullsBadInput(FaultCase):
    def setUp(self):
        super().setUp()
        self.srv = self.start()
        self.c = self.conn(self.srv.port)
        self.create(self.c, "S", ["s.>"])
        self.publish_n(self.c, "s.a", 3)
        r = self.c.api("$JS.API.CONSUMER.DURABLE.CREATE.S.W",
                       {"stream_name": "S", "config": {"durable_name": "W", "ack_policy": "explicit"}})
        self.assertNotIn("error", r, r)
        self.pull_sid = self.c.sub("_PULL")

    def pull(self, body, quiet=0.5):
        self.c.publish("$JS.API.CONSUMER.MSG.NEXT.S.W", body, "_PULL")
        got, deadline = [], time.monotonic() + quiet
        while time.monotonic() < deadline:
            got += [m for m in self.c.poll(0.05) if m.sid == self.pull_sid]
        return got

    def consumer(self):
        r = self.c.api("$JS.API.CONSUMER.INFO.S.W")
        self.assertNotIn("error", r, r)
        return r

    def test_acks_to_unknown_consumers_and_streams_are_dropped(self):
        [m] = self.pull(b"1")
        before = self.consumer()
        rsid = self.c.sub("_ACKR.*")
        # Nothing subscribes to these (acks are subscribed per consumer, in their one shape,
        # as by nats-server): no responders.
        nobody = ["$JS.ACK.NOPE.W.1.1.1.0.0", "$JS.ACK.S.W", "$JS.ACK.S.W.1.1",
                  "$JS.ACK.S.W.1.1.1.0.0.1.2.3.4", "$JS.ACK", "$JS.ACK.S.W.1.1.1.0.0" + ".x" * 200,
                  "$JS.ACK.S.NOPE.1.1.1.0.0"]
        for k, subj in enumerate(nobody):
            self.c.publish(subj, b"+ACK")
            self.c.publish(subj, b"+TERM", "_ACKR.%d" % k)
        got, deadline = {}, time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for r in self.c.poll(0.1):
                if r.sid == rsid:
                    got[int(r.subject.split(".")[1])] = r.status()
        self.assertEqual(got, {k: b"503" for k in range(len(nobody))})
        after = self.consumer()
        self.assertEqual((after["num_ack_pending"], after["ack_floor"]),
                         (before["num_ack_pending"], before["ack_floor"]))
        # The real ack still works.
        sid = self.c.sub("_ACKED")
        self.c.publish(m.reply, b"+ACK", "_ACKED")
        deadline = time.monotonic() + 5
        while not any(x.sid == sid for x in self.c.poll(0.1)):
            self.assertLess(time.monotonic(), deadline, "no reply to the real ack")
        self.assertEqual(self.consumer()["ack_floor"]["stream_seq"], 1)

    def test_pull_requests_the_server_cannot_read(self):
        # nats-server words these with Go's JSON errors; tern with its own text (the status
        # code and the "Bad Request - " prefix are the same).
        for body in [b'{"batch":"ten"}', b"{", b'{"batch":1,"expires":99999999999999999999}',
                     b'{"batch":[1]}', b'{"no_wait":"yes"}', b"\xff\xfe"]:
            got = self.pull(body, quiet=0.3)
            if body == b"\xff\xfe":  # not JSON and not a number: a batch of one
                self.assertEqual(len(got), 1, got)
                continue
            self.assertEqual(len(got), 1, (body, got))
            self.assertTrue(got[0].hdr.startswith(b"NATS/1.0 400 Bad Request - "), got[0].hdr)
        # Absurd values: a huge batch takes what there is and waits for the rest.
        got = self.pull(b'{"batch":9223372036854775807,"no_wait":true}')
        self.assertEqual([m.status() for m in got[:-1]], [None] * (len(got) - 1))
        self.assertIn(got[-1].status(), (b"404", b"408"), got[-1].hdr)
        self.core_pubsub_works(self.srv.port)
        self.assertTrue(alive(self.srv))

    def test_stream_deleted_under_active_consumers(self):
        dsid = self.c.sub("_DELIVER")
        r = self.c.api("$JS.API.CONSUMER.DURABLE.CREATE.S.P", {"stream_name": "S", "config": {
            "durable_name": "P", "deliver_subject": "_DELIVER", "ack_policy": "explicit"}})
        self.assertNotIn("error", r, r)
        self.c.publish("$JS.API.CONSUMER.MSG.NEXT.S.W", b'{"batch":10,"expires":30000000000}',
                       "_PULL")
        got = []
        deadline = time.monotonic() + 5
        while len([m for m in got if m.sid == dsid]) < 3 and time.monotonic() < deadline:
            got += self.c.poll(0.1)
        pushed = [m for m in got if m.sid == dsid]
        self.assertEqual(len(pushed), 3)
        r = self.c.api("$JS.API.STREAM.DELETE.S")
        self.assertTrue(r.get("success"), r)
        # The waiting pull request hears about it at once, not when it expires.
        statuses = []
        deadline = time.monotonic() + 5
        while not statuses and time.monotonic() < deadline:
            statuses += [m for m in self.c.poll(0.1) if m.sid == self.pull_sid and m.status()]
        self.assertEqual([m.hdr for m in statuses], [b"NATS/1.0 409 Consumer Deleted\r\n\r\n"])
        # Acks for the deleted stream's messages are dropped; the server goes on.
        for m in pushed:
            self.c.publish(m.reply, b"+ACK")
        self.create(self.c, "S", ["s.>"])
        names = self.c.api("$JS.API.CONSUMER.NAMES.S")
        self.assertEqual(names["consumers"], [])
        self.assertEqual(self.c.request("s.a", b"new").json().get("seq"), 1)
        self.assertEqual([m for m in self.c.poll(0.3) if m.sid == dsid], [])


if __name__ == "__main__":
    unittest.main()
