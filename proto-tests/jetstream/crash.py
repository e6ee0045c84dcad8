#!/usr/bin/env python3
"""Crash safety of JetStream (issues 11 and 12): SIGKILL the server at random points and
check that nothing it acknowledged is lost.

    python3 proto-tests/jetstream/crash.py --server-bin target/release/tern [--trials 25]

1. Publishers (once with the default sync, once with `sync_interval: always`): publish with
   PubAcks in a window, SIGKILL the server after a random delay, restart it on the same store
   and port, then check that every sequence acknowledged so far is there with its exact
   subject and payload, that no acknowledged sequence is in `state.lost`, that no sequence was
   acknowledged twice, and that the stream takes a new message at `last_seq + 1`.
2. A durable pull consumer (explicit acks, each ack sent with a reply so the script knows
   which acks the server took) receiving while a publisher publishes and the server is killed
   and restarted several times (with each sync setting): every acknowledged publish is
   delivered at least once, the payloads are exact, no message is delivered again after the
   server confirmed its ack, and one in ten deliveries, left unacked on purpose, comes again.

The random delays come from --seed (printed), so a failing run can be repeated. Prints the
trial counts; exits 1 on the first violation.
"""

import argparse
import hashlib
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

from crashwire import STARTED, Closed, Conn, alive, msg_get, start_server

WINDOW = 64  # PubAcks outstanding per publisher


def payload(i):
    """A deterministic payload of 0..299 bytes for publish number i."""
    size = (i * 37) % 300
    block = hashlib.blake2b(b"%d" % i).digest()
    return (b"%d|" % i + block * (size // 64 + 1))[:size]


FAILURE = []


def fail(msg):
    print("crash: FAIL: " + msg, flush=True)
    FAILURE.append(msg)
    sys.exit(1)


def killer(proc, delay):
    """SIGKILL `proc` after `delay` seconds (a Timer, so it lands wherever the server is)."""
    t = threading.Timer(delay, lambda: proc.poll() is None and proc.send_signal(signal.SIGKILL))
    t.daemon = True
    t.start()
    return t


def restart(srv, timer):
    timer.join()
    srv.proc.wait(timeout=10)
    srv.proc = None
    srv.start(srv.port)


def publish_until_killed(c, acked, next_i):
    """Publish with PubAcks until the connection dies; returns (next_i, new acked seqs)."""
    c.sub("_A.*")
    outstanding = set()
    new = []
    try:
        while True:
            batch = b""
            while len(outstanding) < WINDOW:
                batch += c.pub("crash.%d" % (next_i % 7), payload(next_i), "_A.%d" % next_i)
                outstanding.add(next_i)
                next_i += 1
            c.send(batch)
            for m in c.poll(2.0):
                i = int(m.subject[3:])
                ack = m.json()
                if "error" in ack:
                    fail(f"publish {i} refused: {ack}")
                seq = ack["seq"]
                if seq in acked:
                    fail(f"sequence {seq} acknowledged twice (publishes {acked[seq]} and {i})")
                acked[seq] = i
                new.append(seq)
                outstanding.discard(i)
    except Closed:
        return next_i, new


def expected(key):
    if isinstance(key, int):
        return "crash.%d" % (key % 7), payload(key)
    return "crash.new", key


def verify(c, acked, seqs, what):
    found, errs = msg_get(c, "CRASH", sorted(seqs))
    for s in seqs:
        if s not in found:
            fail(f"{what}: acknowledged sequence {s} missing after restart (err_code {errs.get(s)})")
        if found[s] != expected(acked[s]):
            fail(f"{what}: sequence {s} has subject/payload {found[s][0]!r}/{found[s][1][:40]!r}, "
                 f"want {expected(acked[s])[0]!r}/{expected(acked[s])[1][:40]!r}")


def publisher_trials(binary, trials, always, rng):
    mode = "sync_interval: always" if always else "default sync"
    work = tempfile.mkdtemp(prefix="tern-crash-")
    try:
        store = os.path.join(work, "sd")
        conf = "jetstream { sync_interval: always }\n" if always else None
        srv = start_server(store, conf, binary=binary)
        c = Conn(srv.port)
        c.api("$JS.API.STREAM.CREATE.CRASH", {"name": "CRASH", "subjects": ["crash.>"]})
        acked, next_i, lost_unacked = {}, 0, 0
        for t in range(trials):
            timer = killer(srv.proc, rng.uniform(0.02, 0.3))
            next_i, new = publish_until_killed(c, acked, next_i)
            c.close()
            restart(srv, timer)
            c = Conn(srv.port)
            verify(c, acked, new, f"{mode} trial {t + 1}")
            info = c.api("$JS.API.STREAM.INFO.CRASH")
            state = info["state"]
            lost = set((state.get("lost") or {}).get("msgs") or [])
            if lost & set(acked):
                fail(f"{mode} trial {t + 1}: acknowledged sequences reported lost: "
                     f"{sorted(lost & set(acked))[:10]}")
            lost_unacked += len(lost)
            if acked and state["last_seq"] < max(acked):
                fail(f"{mode} trial {t + 1}: last_seq {state['last_seq']} < acked {max(acked)}")
            m = c.request("crash.new", b"after-%d" % t)
            if m is None or "seq" not in m.json():
                fail(f"{mode} trial {t + 1}: no PubAck after restart: {m and m.data}")
            seq = m.json()["seq"]
            if seq != state["last_seq"] + 1:
                fail(f"{mode} trial {t + 1}: new message got seq {seq}, last_seq was "
                     f"{state['last_seq']}")
            acked[seq] = b"after-%d" % t
        verify(c, acked, list(acked), f"{mode} final")
        c.close()
        srv.close()
        print(f"crash: publishers, {mode}: {trials} SIGKILL trials, {len(acked)} acknowledged "
              f"messages all present with exact payloads ({next_i} published; "
              f"{lost_unacked} unacknowledged reported lost)", flush=True)
    finally:
        shutil.rmtree(work, True)


class ConsumerRun:
    """The state of the at-least-once run, across connections and restarts."""

    def __init__(self, total, rng):
        self.total = total
        self.rng = rng
        self.next_i = 0
        self.pub_out = set()
        self.acked = {}  # stream seq -> publish number
        self.delivered = {}  # stream seq -> times
        self.data = {}  # stream seq -> payload first delivered
        self.confirmed = set()  # stream seqs whose ack the server confirmed
        self.ack_sent = set()  # stream seqs an ack was written for
        self.withheld = 0
        self.pulls = 0
        self.redelivered_unconfirmed = 0

    def done(self):
        return self.next_i >= self.total and not self.pub_out and set(self.acked) <= self.ack_sent

    def session(self, c, deadline):
        """Publish, pull and ack on `c` until the server dies, `deadline`, or done()."""
        # Deliveries keep their stored subject: they are told apart by subscription id.
        sid_a, sid_p, sid_k = c.sub("_A.*"), c.sub("_P.*"), c.sub("_K.*")
        self.pub_out.clear()  # lost with the connection; not acknowledged
        pull_open = False
        while not self.done():
            if time.monotonic() > deadline:
                return False
            out = b""
            # Publish while the consumer keeps up (a bounded backlog keeps the run short).
            while self.next_i < self.total and len(self.pub_out) < 16 and \
                    len(self.acked) - len(self.ack_sent) < 2000:
                out += c.pub("cq.x", b"c%d|" % self.next_i + payload(self.next_i)[:100],
                             "_A.%d" % self.next_i)
                self.pub_out.add(self.next_i)
                self.next_i += 1
            if not pull_open:
                self.pulls += 1
                out += c.pub("$JS.API.CONSUMER.MSG.NEXT.CQ.DUR",
                             b'{"batch":50,"expires":300000000}', "_P.%d" % self.pulls)
                pull_open, pull_left, pull_id = True, 50, self.pulls
                pull_sent = time.monotonic()
            elif time.monotonic() - pull_sent > 10:
                # Expiring in 300 ms, a request ends with its 50 messages or a status.
                fail(f"consumer: pull request {pull_id} got {50 - pull_left} messages and no "
                     f"408 in 10 s")
            if out:
                c.send(out)
            for m in c.poll(0.5):
                if m.sid == sid_a:
                    i = int(m.subject[3:])
                    self.pub_out.discard(i)
                    self.acked[m.json()["seq"]] = i
                elif m.sid == sid_k:
                    self.confirmed.add(int(m.subject[3:]))
                elif m.sid == sid_p:
                    if m.status() is not None:
                        if m.subject == "_P.%d" % pull_id:
                            pull_open = False
                        continue
                    self.delivery(c, m)
                    pull_left -= 1
                    if pull_left == 0:
                        pull_open = False
        return True

    def delivery(self, c, m):
        sseq = int(m.reply.split(".")[5])
        if sseq in self.confirmed:
            fail(f"consumer: stream seq {sseq} delivered again after its ack was confirmed")
        n = self.delivered.get(sseq, 0)
        if n:
            self.redelivered_unconfirmed += 1
            if self.data[sseq] != m.data:
                fail(f"consumer: seq {sseq} redelivered with a different payload")
        else:
            self.data[sseq] = m.data
        self.delivered[sseq] = n + 1
        # One first delivery in ten is left unacked: the server must deliver it again, after
        # ack_wait, across restarts too (it never saw an ack for it).
        if n == 0 and self.rng.random() < 0.1:
            self.withheld += 1
            return
        c.publish(m.reply, b"+ACK", "_K.%d" % sseq)
        self.ack_sent.add(sseq)


def consumer_trials(binary, kills, rng, always, tail=500):
    mode = "sync_interval: always" if always else "default sync"
    work = tempfile.mkdtemp(prefix="tern-crashc-")
    try:
        conf = "jetstream { sync_interval: always }\n" if always else None
        srv = start_server(os.path.join(work, "sd"), conf, binary=binary)
        c = Conn(srv.port)
        c.api("$JS.API.STREAM.CREATE.CQ", {"name": "CQ", "subjects": ["cq.>"]})
        r = c.api("$JS.API.CONSUMER.DURABLE.CREATE.CQ.DUR", {"stream_name": "CQ", "config": {
            "durable_name": "DUR", "ack_policy": "explicit", "ack_wait": 1000000000}})
        if "error" in r:
            fail(f"consumer create: {r}")
        run = ConsumerRun(1 << 62, rng)  # publish without end until the last kill
        for k in range(kills):
            timer = killer(srv.proc, rng.uniform(0.1, 0.6))
            try:
                run.session(c, time.monotonic() + 30)
                fail("consumer: the server was not killed within 30 s")
            except Closed:
                pass
            c.close()
            restart(srv, timer)
            c = Conn(srv.port)
        run.total = run.next_i + tail
        if not run.session(c, time.monotonic() + 60):
            missing = sorted(set(run.acked) - run.ack_sent)
            info = c.api("$JS.API.CONSUMER.INFO.CQ.DUR")
            fail(f"consumer: {len(missing)} acknowledged publishes not delivered (or a withheld "
                 f"ack not redelivered), "
                 f"e.g. {[(s, run.delivered.get(s, 0)) for s in missing[:10]]} "
                 f"(seq: times delivered); consumer info {info}")
        for seq, i in run.acked.items():
            if run.data.get(seq) != b"c%d|" % i + payload(i)[:100]:
                fail(f"consumer: seq {seq} delivered with the wrong payload")
        c.close()
        srv.close()
        dups = sum(1 for n in run.delivered.values() if n > 1)
        print(f"crash: durable consumer, {mode}: {kills} SIGKILL restarts while receiving; "
              f"{len(run.acked)} acknowledged publishes all delivered ({run.next_i} published), "
              f"{dups} delivered more than once ({run.withheld} acks withheld on purpose), "
              f"none after its ack was confirmed", flush=True)
    finally:
        shutil.rmtree(work, True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server-bin", default=os.environ.get("TERN_BIN"))
    ap.add_argument("--trials", type=int, default=25, help="SIGKILLs per publisher run")
    ap.add_argument("--consumer-kills", type=int, default=8)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--parts", default="default,always,consumer,consumer-always",
                    help="which runs, comma-separated: default, always, consumer, "
                         "consumer-always")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"crash: seed {seed}", flush=True)
    rng = random.Random(seed)
    parts = a.parts.split(",")
    try:
        run_parts(a, parts, rng)
    except BaseException:
        # What the server was doing when the check failed: alive or not, and its last log lines.
        for srv in STARTED:
            state = "running" if alive(srv) else f"exited ({srv.proc and srv.proc.returncode})"
            print(f"crash: server on port {srv.port}: {state}; log tail:\n{srv.log()}", flush=True)
        # Again last, where a CI log's tail shows it.
        print(f"crash: seed {seed}: FAIL: {FAILURE[0] if FAILURE else 'see the traceback'}",
              flush=True)
        raise


def run_parts(a, parts, rng):
    if "default" in parts:
        publisher_trials(a.server_bin, a.trials, False, rng)
    if "always" in parts:
        publisher_trials(a.server_bin, a.trials, True, rng)
    if "consumer" in parts:
        consumer_trials(a.server_bin, a.consumer_kills, rng, False)
    if "consumer-always" in parts:
        consumer_trials(a.server_bin, a.consumer_kills, rng, True)


if __name__ == "__main__":
    main()
