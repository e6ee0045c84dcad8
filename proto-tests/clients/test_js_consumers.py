# nats-py's JetStream consumers against the server (issue 12): push and pull subscriptions,
# a durable that resumes after the client reconnects and after a server restart, the ack
# kinds (ack, nak with and without delay, in_progress, term, ack_sync), max_deliver with its
# advisory, ack_wait redelivery, fetch in batches and with timeouts, and the client's ordered
# consumer (ephemeral push with flow control and heartbeats). Every test also passes against
# nats-server 2.9.10 (TERN_BIN=/usr/sbin/nats-server).

import asyncio
import json
import unittest

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from harness import TIMEOUT
from jsharness import JsTestCase


class JsConsumerCase(JsTestCase):
    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.nc, self.js = await self.js_connect()
        await self.js.add_stream(name="S", subjects=["s.>"])

    async def publish_n(self, n, subject="s.x", start=0):
        for i in range(start, start + n):
            await self.js.publish(subject, b"m%d" % i)

    async def drain_sub(self, sub, n, timeout=TIMEOUT):
        return [await self.next_msg(sub, timeout) for _ in range(n)]


class Push(JsConsumerCase):
    async def test_ephemeral_push_delivers_in_order_with_metadata(self):
        await self.publish_n(5)
        sub = await self.js.subscribe("s.x", manual_ack=True)
        msgs = await self.drain_sub(sub, 5)
        self.assertEqual([m.data for m in msgs], [b"m%d" % i for i in range(5)])
        for i, m in enumerate(msgs):
            md = m.metadata
            self.assertEqual((md.stream, md.sequence.stream, md.sequence.consumer, md.num_delivered),
                             ("S", i + 1, i + 1, 1))
            self.assertEqual(md.num_pending, 4 - i)
            self.assertEqual(m.subject, "s.x")
            await m.ack()
        await self.sync(self.nc)
        info = await sub.consumer_info()
        self.assertEqual((info.num_ack_pending, info.num_pending, info.delivered.stream_seq,
                          info.ack_floor.stream_seq), (0, 0, 5, 5))
        # Messages published afterwards arrive too.
        await self.publish_n(1, start=5)
        self.assertEqual((await self.next_msg(sub)).data, b"m5")

    async def test_callback_autoack_and_queue_group(self):
        await self.publish_n(20)
        got = []

        async def cb(msg):
            got.append(msg.data)

        a = await self.js.subscribe("s.x", queue="workers", cb=cb)
        b = await self.js.subscribe("s.x", queue="workers", cb=cb)
        await self.wait_for(lambda: len(got) == 20, what="20 messages to the group")
        self.assertEqual(sorted(got), sorted(b"m%d" % i for i in range(20)))
        await self.wait_for_acked(a, 20)
        await b.unsubscribe()
        await a.unsubscribe()

    async def wait_for_acked(self, sub, n):
        for _ in range(200):
            info = await sub.consumer_info()
            if info.ack_floor.stream_seq == n and info.num_ack_pending == 0:
                return info
            await asyncio.sleep(0.02)
        self.fail(f"ack floor never reached {n}: {info!r}")

    async def test_durable_resumes_after_reconnect(self):
        await self.publish_n(6)
        sub = await self.js.subscribe("s.x", durable="D", manual_ack=True)
        for m in await self.drain_sub(sub, 6):
            await m.ack_sync()
        await self.nc.close()
        # Published while nobody listens.
        nc, js = await self.js_connect()
        for i in range(6, 10):
            await js.publish("s.x", b"m%d" % i)
        info = await js.consumer_info("S", "D")
        self.assertEqual((info.num_pending, info.ack_floor.stream_seq), (4, 6))
        self.assertFalse(info.push_bound)
        sub = await js.subscribe("s.x", durable="D", manual_ack=True)
        msgs = await self.drain_sub(sub, 4)
        self.assertEqual([m.metadata.sequence.stream for m in msgs], [7, 8, 9, 10])
        self.assertEqual([m.metadata.sequence.consumer for m in msgs], [7, 8, 9, 10])
        for m in msgs:
            await m.ack()
        # Nothing else (no redelivery of what was acked).
        with self.assertRaises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.3)

    async def test_ack_wait_redelivers_unacked_push(self):
        cfg = ConsumerConfig(ack_wait=0.5)
        await self.publish_n(2)
        sub = await self.js.subscribe("s.x", durable="W", manual_ack=True, config=cfg)
        first = await self.drain_sub(sub, 2)
        await first[0].ack()
        again = await self.next_msg(sub)
        self.assertEqual((again.data, again.metadata.num_delivered, again.metadata.sequence.stream),
                         (b"m1", 2, 2))
        await again.ack_sync()
        info = await sub.consumer_info()
        self.assertEqual((info.num_ack_pending, info.num_redelivered, info.ack_floor.stream_seq), (0, 0, 2))

    async def test_deliver_policies(self):
        await self.publish_n(3, "s.a")
        await self.publish_n(2, "s.b", start=3)
        sub = await self.js.subscribe("s.*", deliver_policy=DeliverPolicy.LAST)
        self.assertEqual((await self.next_msg(sub)).metadata.sequence.stream, 5)
        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=4)
        sub = await self.js.subscribe("s.*", config=cfg)
        self.assertEqual([m.metadata.sequence.stream for m in await self.drain_sub(sub, 2)], [4, 5])
        sub = await self.js.subscribe("s.*", deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
        self.assertEqual(sorted(m.metadata.sequence.stream for m in await self.drain_sub(sub, 2)), [3, 5])
        sub = await self.js.subscribe("s.*", deliver_policy=DeliverPolicy.NEW)
        await self.publish_n(1, "s.a", start=5)
        self.assertEqual((await self.next_msg(sub)).data, b"m5")


class Acks(JsConsumerCase):
    async def pull(self, name="P", **cfg):
        cfg.setdefault("ack_wait", 30)
        return await self.js.pull_subscribe("s.x", durable=name, config=ConsumerConfig(**cfg))

    async def test_ack_nak_in_progress_term(self):
        await self.publish_n(4)
        psub = await self.pull()
        m = await psub.fetch(4, timeout=TIMEOUT)
        self.assertEqual(len(m), 4)
        await m[0].ack()
        await m[1].nak()
        await m[2].in_progress()
        await m[3].term()
        # The nak'd message comes back at once, delivered twice; the others do not.
        again = await psub.fetch(4, timeout=1)
        self.assertEqual([(x.data, x.metadata.num_delivered) for x in again], [(b"m1", 2)])
        await again[0].ack()
        await m[2].ack_sync()
        info = await psub.consumer_info()
        self.assertEqual((info.num_ack_pending, info.num_redelivered, info.ack_floor.stream_seq,
                          info.delivered.consumer_seq, info.num_pending), (0, 0, 4, 5, 0))

    async def test_nak_with_delay(self):
        await self.publish_n(1)
        psub = await self.pull()
        [m] = await psub.fetch(1, timeout=TIMEOUT)
        await m.nak(delay=0.6)
        # Not yet: a short fetch comes back empty...
        with self.assertRaises(nats.errors.TimeoutError):
            await psub.fetch(1, timeout=0.2)
        # ...then it is redelivered.
        [m] = await psub.fetch(1, timeout=3)
        self.assertEqual((m.data, m.metadata.num_delivered), (b"m0", 2))
        await m.ack_sync()

    async def test_ack_sync_and_ack_none(self):
        await self.publish_n(3)
        psub = await self.pull()
        msgs = await psub.fetch(3, timeout=TIMEOUT)
        for m in msgs:
            reply = await m.ack_sync()
            self.assertIsNotNone(reply)
        self.assertEqual((await psub.consumer_info()).ack_floor.stream_seq, 3)
        # ack_policy none: nothing pending after delivery.
        sub = await self.js.subscribe("s.x", config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        await self.drain_sub(sub, 3)
        info = await sub.consumer_info()
        self.assertEqual((info.num_ack_pending, info.ack_floor.stream_seq), (0, 3))

    async def test_ack_all(self):
        await self.publish_n(5)
        psub = await self.pull(ack_policy=AckPolicy.ALL)
        msgs = await psub.fetch(5, timeout=TIMEOUT)
        await msgs[3].ack_sync()
        info = await psub.consumer_info()
        self.assertEqual((info.ack_floor.stream_seq, info.num_ack_pending), (4, 1))

    async def test_max_deliver_and_advisory(self):
        adv = await self.nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.MD")
        await self.sync(self.nc)
        await self.publish_n(1)
        psub = await self.pull("MD", ack_wait=0.3, max_deliver=2)
        [m] = await psub.fetch(1, timeout=TIMEOUT)
        self.assertEqual(m.metadata.num_delivered, 1)
        [m] = await psub.fetch(1, timeout=3)
        self.assertEqual(m.metadata.num_delivered, 2)
        # Not a third time.
        with self.assertRaises(nats.errors.TimeoutError):
            await psub.fetch(1, timeout=1.0)
        event = json.loads((await self.next_msg(adv)).data)
        self.assertEqual((event["type"], event["stream"], event["consumer"], event["stream_seq"],
                          event["deliveries"]),
                         ("io.nats.jetstream.advisory.v1.max_deliver", "S", "MD", 1, 2))


class Pull(JsConsumerCase):
    async def test_fetch_batches_and_timeouts(self):
        await self.publish_n(25)
        psub = await self.js.pull_subscribe("s.x", durable="F")
        sizes, seen = [], []
        while len(seen) < 25:
            msgs = await psub.fetch(10, timeout=TIMEOUT)
            sizes.append(len(msgs))
            for m in msgs:
                seen.append(m.data)
                await m.ack()
        self.assertEqual(sizes, [10, 10, 5])
        self.assertEqual(seen, [b"m%d" % i for i in range(25)])
        # Empty: fetch of one and of many time out. (nats-py raises its own TimeoutError, or
        # asyncio's, its base, when the deadline ran out while it waited for the no-wait
        # probe's answer: on a loaded machine, against either server.)
        with self.assertRaises(asyncio.TimeoutError):
            await psub.fetch(1, timeout=0.3)
        with self.assertRaises(asyncio.TimeoutError):
            await psub.fetch(5, timeout=0.3)
        # The 408s of those requests come at their expiry, which is the client's deadline:
        # let them arrive now, so the next fetch drops them instead of seeing one while it
        # waits (nats-py then raises TimeoutError, against nats-server as well).
        await asyncio.sleep(0.5)
        # A waiting fetch gets a message published while it waits.
        task = asyncio.ensure_future(psub.fetch(1, timeout=3))
        await asyncio.sleep(0.2)
        await self.publish_n(1, start=25)
        [m] = await task
        self.assertEqual(m.data, b"m25")

    async def test_two_pull_subscribers_share_the_work(self):
        await self.publish_n(40)
        p1 = await self.js.pull_subscribe("s.x", durable="SHARE")
        p2 = await self.js.pull_subscribe("s.x", durable="SHARE")
        got = []
        while len(got) < 40:
            for p in (p1, p2):
                for m in await p.fetch(7, timeout=TIMEOUT):
                    got.append(m.metadata.sequence.stream)
                    await m.ack()
        self.assertEqual(sorted(got), list(range(1, 41)))

    async def test_durable_pull_survives_server_restart(self):
        await self.publish_n(10)
        psub = await self.js.pull_subscribe("s.x", durable="R", config=ConsumerConfig(ack_wait=1))
        msgs = await psub.fetch(6, timeout=TIMEOUT)
        for m in msgs[:4]:
            await m.ack_sync()
        # 5 and 6 were delivered but not acked when the server stops.
        await self.nc.close()
        await self.restart()
        nc, js = await self.js_connect()
        info = await js.consumer_info("S", "R")
        self.assertEqual((info.ack_floor.stream_seq, info.delivered.stream_seq), (4, 6))
        psub = await js.pull_subscribe("s.x", durable="R")
        got = []
        while len(got) < 6:
            for m in await psub.fetch(6, timeout=TIMEOUT):
                got.append((m.metadata.sequence.stream, m.data))
                await m.ack()
        self.assertEqual(sorted(got), [(i, b"m%d" % (i - 1)) for i in range(5, 11)])


class Ordered(JsConsumerCase):
    async def test_ordered_consumer_gets_everything_in_order(self):
        n = 600
        for i in range(n):
            await self.js.publish("s.o", b"%d" % i + b"x" * 200)
        sub = await self.js.subscribe("s.o", ordered_consumer=True, idle_heartbeat=0.5)
        got = [int((await self.next_msg(sub)).data.split(b"x")[0]) for _ in range(n)]
        self.assertEqual(got, list(range(n)))
        # It keeps going with new messages.
        await self.js.publish("s.o", b"new")
        self.assertEqual((await self.next_msg(sub)).data, b"new")
        info = await sub.consumer_info()
        self.assertEqual((info.config.ack_policy, info.config.flow_control), (AckPolicy.NONE, True))


if __name__ == "__main__":
    unittest.main()
