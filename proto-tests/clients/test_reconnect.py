# Reconnect: the server is restarted on the same port; a nats-py client with
# reconnect options notices the disconnect, reconnects, re-sends its SUBs,
# and subscriptions made before the restart keep working afterwards.

import asyncio
import unittest

from harness import TIMEOUT, ServerTestCase

RECONNECT_TIMEOUT = 15.0


class ReconnectTests(ServerTestCase):
    async def _reconnecting_client(self, **kw):
        events = {"disconnected": asyncio.Event(), "reconnected": asyncio.Event()}

        async def on_disc():
            events["disconnected"].set()

        async def on_recon():
            events["reconnected"].set()

        nc = await self.connect(allow_reconnect=True, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.2,
                                disconnected_cb=on_disc, reconnected_cb=on_recon, **kw)
        return nc, events

    async def _restart_and_wait(self, events):
        await asyncio.to_thread(self.server.restart)
        await asyncio.wait_for(events["disconnected"].wait(), RECONNECT_TIMEOUT)
        await asyncio.wait_for(events["reconnected"].wait(), RECONNECT_TIMEOUT)

    async def test_subscription_survives_restart(self):
        nc, events = await self._reconnecting_client()
        received = []

        async def cb(msg):
            received.append(msg.data)

        await nc.subscribe("recon.subj", cb=cb)
        plain = await nc.subscribe("recon.plain")
        await nc.publish("recon.subj", b"before")
        await self.sync(nc)
        await self.wait_for(lambda: received == [b"before"], what="pre-restart msg")
        port = self.server.port

        await self._restart_and_wait(events)
        self.assertEqual(self.server.port, port)
        self.assertTrue(nc.is_connected)
        self.assertEqual(nc.connected_url.port, port)
        await self.sync(nc)  # SUBs were replayed before this PING

        # From a fresh client ...
        other = await self.connect()
        await other.publish("recon.subj", b"after-other")
        await other.publish("recon.plain", b"plain-other")
        # ... and from the reconnected client itself.
        await nc.publish("recon.subj", b"after-self")
        await self.wait_for(lambda: len(received) >= 3, what="post-restart msgs")
        self.assertEqual(sorted(received), [b"after-other", b"after-self", b"before"])
        self.assertEqual((await self.next_msg(plain)).data, b"plain-other")

    async def test_request_reply_after_restart(self):
        responder, ev1 = await self._reconnecting_client()

        async def cb(msg):
            await msg.respond(b"pong:" + msg.data)

        await responder.subscribe("recon.svc", cb=cb)
        await self.sync(responder)
        requester, ev2 = await self._reconnecting_client()
        self.assertEqual((await requester.request("recon.svc", b"1", timeout=TIMEOUT)).data,
                         b"pong:1")

        await asyncio.to_thread(self.server.restart)
        for ev in (ev1, ev2):
            await asyncio.wait_for(ev["reconnected"].wait(), RECONNECT_TIMEOUT)
        await self.sync(responder)
        # The muxed response inbox subscription is replayed too.
        resp = await requester.request("recon.svc", b"2", timeout=TIMEOUT)
        self.assertEqual(resp.data, b"pong:2")

    async def test_queue_subscription_survives_restart(self):
        nc, events = await self._reconnecting_client()
        sub = await nc.subscribe("recon.q", queue="workers")
        await self.sync(nc)
        await self._restart_and_wait(events)
        await self.sync(nc)
        other = await self.connect()
        for _ in range(5):
            await other.publish("recon.q", b"job")
        for _ in range(5):
            self.assertEqual((await self.next_msg(sub)).data, b"job")

    async def test_reconnect_with_auth(self):
        # Credentials are re-sent in the CONNECT after reconnecting.
        self.server.stop()
        self.server.extra_args = ["--user", "ru", "--pass", "rp"]
        await asyncio.to_thread(self.server.start)
        nc, events = await self._reconnecting_client(user="ru", password="rp")
        sub = await nc.subscribe("recon.auth")
        await self.sync(nc)
        await self._restart_and_wait(events)
        await self.sync(nc)
        await nc.publish("recon.auth", b"ok")
        self.assertEqual((await self.next_msg(sub)).data, b"ok")


if __name__ == "__main__":
    unittest.main()
