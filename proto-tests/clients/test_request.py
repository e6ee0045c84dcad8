# Request/reply through nats-py: the default muxed-inbox request
# (SUB _INBOX.<id>.* once, one token per request), old-style requests
# (one inbox SUB + UNSUB 1 each), concurrent requests, headers on requests
# and replies, and no-responders (HMSG with "NATS/1.0 503" -> NoRespondersError).

import asyncio
import unittest

from nats import errors

from harness import TIMEOUT, ServerTestCase


async def responder(test, subject, queue=""):
    """A separate connection answering `subject` with b"re:" + data."""
    nc = await test.connect()

    async def cb(msg):
        await msg.respond(b"re:" + msg.data)

    await nc.subscribe(subject, queue=queue, cb=cb)
    await test.sync(nc)
    return nc


class RequestReplyTests(ServerTestCase):

    async def test_request_reply(self):
        await responder(self, "svc.echo")
        nc = await self.connect()
        resp = await nc.request("svc.echo", b"ping", timeout=TIMEOUT)
        self.assertEqual(resp.data, b"re:ping")

    async def test_request_reply_same_connection(self):
        nc = await self.connect()

        async def cb(msg):
            await msg.respond(msg.data.upper())

        await nc.subscribe("svc.upper", cb=cb)
        resp = await nc.request("svc.upper", b"abc", timeout=TIMEOUT)
        self.assertEqual(resp.data, b"ABC")

    async def test_reply_subject_is_inbox(self):
        nc = await self.connect()
        seen = []

        async def cb(msg):
            seen.append(msg.reply)
            await msg.respond(b"ok")

        await nc.subscribe("svc.inbox", cb=cb)
        await nc.request("svc.inbox", b"", timeout=TIMEOUT)
        self.assertTrue(seen[0].startswith("_INBOX."), seen)

    async def test_many_concurrent_requests(self):
        await responder(self, "svc.many")
        nc = await self.connect()
        resps = await asyncio.gather(*(
            nc.request("svc.many", str(i).encode(), timeout=TIMEOUT)
            for i in range(50)))
        self.assertEqual([r.data for r in resps],
                         [b"re:" + str(i).encode() for i in range(50)])

    async def test_old_style_request(self):
        await responder(self, "svc.old")
        nc = await self.connect()
        for i in range(3):
            resp = await nc.request("svc.old", b"x%d" % i, timeout=TIMEOUT,
                                    old_style=True)
            self.assertEqual(resp.data, b"re:x%d" % i)

    async def test_request_to_queue_group_gets_one_reply(self):
        for _ in range(3):
            await responder(self, "svc.q", queue="workers")
        nc = await self.connect()
        replies = []
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("svc.q", b"one", reply=inbox)
        replies.append(await self.next_msg(sub))
        await self.sync(nc)
        # A normal request afterwards proves all replies for "one" have landed.
        await nc.request("svc.q", b"two", timeout=TIMEOUT)
        await self.sync(nc)
        self.assertEqual(sub.pending_msgs, 0, "more than one group member replied")
        self.assertEqual(replies[0].data, b"re:one")

    async def test_request_and_reply_with_headers(self):
        rnc = await self.connect()

        async def cb(msg):
            await rnc.publish(msg.reply, msg.data,
                              headers={"Echo": msg.headers.get("Req", "")})

        await rnc.subscribe("svc.hdr", cb=cb)
        await self.sync(rnc)
        nc = await self.connect()
        resp = await nc.request("svc.hdr", b"d", timeout=TIMEOUT,
                                headers={"Req": "42"})
        self.assertEqual(resp.data, b"d")
        self.assertEqual(resp.headers, {"Echo": "42"})


class NoRespondersTests(ServerTestCase):
    # A request with no subscriber must fail with NoRespondersError (server
    # sends a 503 status HMSG), not with a timeout. The generous timeout only
    # matters if the server never answers, in which case TimeoutError fails it.

    async def test_no_responders(self):
        nc = await self.connect()
        with self.assertRaises(errors.NoRespondersError):
            await nc.request("nobody.home", b"hello", timeout=TIMEOUT)

    async def test_no_responders_old_style(self):
        nc = await self.connect()
        with self.assertRaises(errors.NoRespondersError):
            await nc.request("nobody.home.old", b"x", timeout=TIMEOUT, old_style=True)

    async def test_no_responders_raw_status(self):
        # What the client actually receives on its reply subject.
        nc = await self.connect()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("nobody.raw", b"", reply=inbox)
        # CONNECT carried no_responders=true, so any reply-carrying publish
        # that matches no subscriber is answered with a 503 status message.
        msg = await self.next_msg(sub)
        self.assertEqual(msg.data, b"")
        self.assertEqual(msg.headers.get("Status"), "503")

    async def test_connection_usable_after_no_responders(self):
        await responder(self, "svc.after")
        nc = await self.connect()
        with self.assertRaises(errors.NoRespondersError):
            await nc.request("nobody.here", b"", timeout=TIMEOUT)
        resp = await nc.request("svc.after", b"x", timeout=TIMEOUT)
        self.assertEqual(resp.data, b"re:x")
        self.assertTrue(nc.is_connected)

    async def test_publish_without_reply_to_nobody_is_silent(self):
        nc = await self.connect()
        await nc.publish("nobody.at.all", b"x")
        await self.sync(nc)
        self.assertTrue(nc.is_connected)
        self.assertEqual(self.client_errors, [])


if __name__ == "__main__":
    unittest.main()
