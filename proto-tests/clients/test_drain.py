# Drain: Subscription.drain() (UNSUB, flush, then process what is pending) and
# Client.drain() (drain every sub, flush publishes, close). Messages routed
# before the drain must all be handled; nothing arrives after it.

import asyncio
import unittest

from harness import TIMEOUT, ServerTestCase

N = 50


class DrainTests(ServerTestCase):
    async def _slow_collector(self, nc, subject, received):
        async def cb(msg):
            await asyncio.sleep(0.002)  # keep messages queued client-side
            received.append(msg.data)

        sub = await nc.subscribe(subject, cb=cb)
        await self.sync(nc)
        return sub

    async def test_subscription_drain(self):
        nc = await self.connect()
        pub = await self.connect()
        received = []
        sub = await self._slow_collector(nc, "drain.sub", received)
        for i in range(N):
            await pub.publish("drain.sub", str(i).encode())
        await self.sync(pub)
        await asyncio.wait_for(sub.drain(), TIMEOUT * 2)
        self.assertEqual(received, [str(i).encode() for i in range(N)])
        # Interest is gone on the server: later publishes are not delivered,
        # while the connection stays usable.
        marker = await nc.subscribe("drain.marker")
        await self.sync(nc)
        await pub.publish("drain.sub", b"late")
        await pub.publish("drain.marker", b"end")
        self.assertEqual((await self.next_msg(marker)).data, b"end")
        await self.sync(nc)
        await asyncio.sleep(0.05)
        self.assertEqual(len(received), N)
        self.assertTrue(nc.is_connected)

    async def test_connection_drain(self):
        closed = asyncio.Event()

        async def on_closed():
            closed.set()

        nc = await self.connect(closed_cb=on_closed)
        pub = await self.connect()
        got_a, got_b = [], []
        await self._slow_collector(nc, "drain.a", got_a)
        await self._slow_collector(nc, "drain.b.*", got_b)
        for i in range(N):
            await pub.publish("drain.a", str(i).encode())
            await pub.publish(f"drain.b.{i}", str(i).encode())
        await self.sync(pub)
        await asyncio.wait_for(nc.drain(), TIMEOUT * 2)
        await asyncio.wait_for(closed.wait(), TIMEOUT)
        self.assertTrue(nc.is_closed)
        self.assertEqual(got_a, [str(i).encode() for i in range(N)])
        self.assertEqual(got_b, [str(i).encode() for i in range(N)])
        # The server dropped the drained client's interest.
        watcher = await self.connect()
        wsub = await watcher.subscribe("drain.a")
        await self.sync(watcher)
        await pub.publish("drain.a", b"after")
        self.assertEqual((await self.next_msg(wsub)).data, b"after")
        self.assertEqual(len(got_a), N)

    async def test_connection_drain_flushes_publishes(self):
        sub_nc = await self.connect()
        sub = await sub_nc.subscribe("drain.pubs")
        await self.sync(sub_nc)
        nc = await self.connect()
        for i in range(N):
            await nc.publish("drain.pubs", str(i).encode())
        await asyncio.wait_for(nc.drain(), TIMEOUT)
        self.assertTrue(nc.is_closed)
        for i in range(N):
            self.assertEqual((await self.next_msg(sub)).data, str(i).encode())

    async def test_drain_with_queue_subscribers(self):
        nc = await self.connect()
        pub = await self.connect()
        received = []
        for _ in range(3):
            async def cb(msg):
                await asyncio.sleep(0.001)
                received.append(msg.data)
            await nc.subscribe("drain.q", queue="g", cb=cb)
        await self.sync(nc)
        for i in range(N):
            await pub.publish("drain.q", str(i).encode())
        await self.sync(pub)
        await asyncio.wait_for(nc.drain(), TIMEOUT * 2)
        self.assertEqual(sorted(received), sorted(str(i).encode() for i in range(N)))


if __name__ == "__main__":
    unittest.main()
