# Publish/subscribe: basic delivery, fan-out, reply subjects, echo, unsubscribe,
# auto-unsubscribe, the `*` and `>` wildcards, queue groups (each message to
# exactly one member), and headers (HPUB/HMSG).

import asyncio
import unittest

from harness import TIMEOUT, ServerTestCase

END = b"__end__"


class PubSubTests(ServerTestCase):
    async def test_basic_pub_sub(self):
        nc = await self.connect()
        sub = await nc.subscribe("greet.joe")
        await nc.publish("greet.joe", b"hello")
        msg = await self.next_msg(sub)
        self.assertEqual(msg.subject, "greet.joe")
        self.assertEqual(msg.data, b"hello")
        self.assertEqual(msg.reply, "")
        self.assertIsNone(msg.headers)

    async def test_empty_payload(self):
        nc = await self.connect()
        sub = await nc.subscribe("empty")
        await nc.publish("empty", b"")
        self.assertEqual((await self.next_msg(sub)).data, b"")

    async def test_binary_payload_with_crlf(self):
        nc = await self.connect()
        sub = await nc.subscribe("bin")
        data = bytes(range(256)) + b"\r\nPUB x 1\r\n\r\n"
        await nc.publish("bin", data)
        self.assertEqual((await self.next_msg(sub)).data, data)

    async def test_between_two_clients_in_order(self):
        sub_nc = await self.connect()
        pub_nc = await self.connect()
        sub = await sub_nc.subscribe("orders.new")
        await self.sync(sub_nc)
        for i in range(100):
            await pub_nc.publish("orders.new", f"order-{i}".encode())
        await pub_nc.publish("orders.new", END)
        got = await self.collect_until(sub, END)
        self.assertEqual([m.data for m in got],
                         [f"order-{i}".encode() for i in range(100)])

    async def test_fan_out_to_all_subscribers(self):
        pub_nc = await self.connect()
        subs = []
        for _ in range(3):
            nc = await self.connect()
            subs.append(await nc.subscribe("news"))
            await self.sync(nc)
        await pub_nc.publish("news", b"extra")
        for sub in subs:
            self.assertEqual((await self.next_msg(sub)).data, b"extra")

    async def test_two_subs_same_connection_each_get_copy(self):
        nc = await self.connect()
        a = await nc.subscribe("dup")
        b = await nc.subscribe("dup")
        await nc.publish("dup", b"1")
        self.assertEqual((await self.next_msg(a)).data, b"1")
        self.assertEqual((await self.next_msg(b)).data, b"1")

    async def test_reply_subject_is_delivered(self):
        nc = await self.connect()
        sub = await nc.subscribe("with.reply")
        await nc.publish("with.reply", b"q", reply="my.inbox.1")
        msg = await self.next_msg(sub)
        self.assertEqual(msg.reply, "my.inbox.1")

    async def test_no_echo(self):
        nc = await self.connect(no_echo=True)
        other = await self.connect()
        sub = await nc.subscribe("echo.test")
        await self.sync(nc)
        await nc.publish("echo.test", b"mine")
        await self.sync(nc)
        await other.publish("echo.test", b"theirs")
        self.assertEqual((await self.next_msg(sub)).data, b"theirs")

    async def test_unsubscribe_stops_delivery(self):
        nc = await self.connect()
        sub = await nc.subscribe("unsub.me")
        marker = await nc.subscribe("unsub.marker")
        received = []

        async def cb(msg):
            received.append(msg)

        watched = await nc.subscribe("unsub.me", cb=cb)
        await nc.publish("unsub.me", b"before")
        self.assertEqual((await self.next_msg(sub)).data, b"before")
        await self.wait_for(lambda: received, what="callback delivery")
        await watched.unsubscribe()
        await sub.unsubscribe()
        # Re-subscribe a fresh plain sub to prove the subject still routes.
        fresh = await nc.subscribe("unsub.me")
        await nc.publish("unsub.me", b"after")
        await nc.publish("unsub.marker", END)
        self.assertEqual((await self.next_msg(fresh)).data, b"after")
        self.assertEqual((await self.next_msg(marker)).data, END)
        self.assertEqual([m.data for m in received], [b"before"])

    async def test_auto_unsubscribe_max_msgs(self):
        nc = await self.connect()
        pub = await self.connect()
        received = []

        async def cb(msg):
            received.append(msg.data)

        await nc.subscribe("auto.unsub", cb=cb, max_msgs=3)  # UNSUB <sid> 3
        marker = await nc.subscribe("auto.marker")
        await self.sync(nc)
        for i in range(6):
            await pub.publish("auto.unsub", str(i).encode())
        await pub.publish("auto.marker", END)
        self.assertEqual((await self.next_msg(marker)).data, END)
        await self.wait_for(lambda: len(received) >= 3, what="3 messages")
        self.assertEqual(received, [b"0", b"1", b"2"])
        self.assertEqual(self.client_errors, [])


class WildcardTests(ServerTestCase):
    SUBJECTS = ["foo", "foo.bar", "foo.baz", "foo.bar.baz", "foo.bar.baz.qux",
                "bar.foo", "a.b.c", "a.x.c", "a.b.d", "a.b.c.d", "foo.bar.qux"]

    async def _match(self, pattern):
        sub_nc = await self.connect()
        pub_nc = await self.connect()
        sub = await sub_nc.subscribe(pattern)
        end = await sub_nc.subscribe("end")
        await self.sync(sub_nc)
        for s in self.SUBJECTS:
            await pub_nc.publish(s, s.encode())
        await pub_nc.publish("end", b"end")
        await self.next_msg(end)
        await self.sync(sub_nc)
        got = []
        while sub.pending_msgs:
            msg = await self.next_msg(sub)
            self.assertEqual(msg.subject, msg.data.decode())  # real subject
            got.append(msg.subject)
        return got

    async def test_star_single_token(self):
        self.assertEqual(await self._match("foo.*"), ["foo.bar", "foo.baz"])

    async def test_star_middle_token(self):
        self.assertEqual(await self._match("a.*.c"), ["a.b.c", "a.x.c"])

    async def test_star_multiple(self):
        self.assertEqual(await self._match("*.*"),
                         ["foo.bar", "foo.baz", "bar.foo"])

    async def test_gt_tail(self):
        self.assertEqual(await self._match("foo.>"),
                         ["foo.bar", "foo.baz", "foo.bar.baz",
                          "foo.bar.baz.qux", "foo.bar.qux"])

    async def test_gt_after_star(self):
        self.assertEqual(await self._match("foo.*.>"),
                         ["foo.bar.baz", "foo.bar.baz.qux", "foo.bar.qux"])

    async def test_full_wildcard(self):
        self.assertEqual(await self._match(">"), self.SUBJECTS + ["end"])

    async def test_literal_and_wildcard_both_deliver(self):
        nc = await self.connect()
        lit = await nc.subscribe("foo.bar")
        star = await nc.subscribe("foo.*")
        gt = await nc.subscribe("foo.>")
        await nc.publish("foo.bar", b"x")
        for sub in (lit, star, gt):
            self.assertEqual((await self.next_msg(sub)).subject, "foo.bar")

    async def test_overlapping_wildcards_same_sub_single_delivery(self):
        # One subscription is one SID: a message is delivered once per SID.
        nc = await self.connect()
        sub = await nc.subscribe("ov.>")
        await nc.publish("ov.a.b", b"1")
        await nc.publish("ov.a.b", END)
        got = await self.collect_until(sub, END)
        self.assertEqual([m.data for m in got], [b"1"])


class QueueGroupTests(ServerTestCase):
    N = 300

    async def test_each_message_delivered_once_across_group(self):
        pub_nc = await self.connect()
        counts = [[] for _ in range(3)]
        sub_ncs = []
        for i in range(3):
            nc = await self.connect()
            sub_ncs.append(nc)

            async def cb(msg, i=i):
                counts[i].append(msg.data)

            await nc.subscribe("work", queue="workers", cb=cb)
            await self.sync(nc)
        for n in range(self.N):
            await pub_nc.publish("work", str(n).encode())
        await self.sync(pub_nc)
        for nc in sub_ncs:  # PONG comes after every MSG already routed to it
            await self.sync(nc)
        total = lambda: sum(len(c) for c in counts)
        await self.wait_for(lambda: total() >= self.N, what=f"{self.N} messages")
        for nc in sub_ncs:
            await self.sync(nc)
        await asyncio.sleep(0.1)
        all_msgs = [m for c in counts for m in c]
        self.assertEqual(len(all_msgs), self.N, "duplicates delivered")
        self.assertEqual(sorted(all_msgs), sorted(str(n).encode() for n in range(self.N)))
        # Load is spread: every member gets something (nats-server picks randomly).
        self.assertTrue(all(counts), [len(c) for c in counts])

    async def test_queue_group_and_plain_subscriber(self):
        nc = await self.connect()
        plain = await nc.subscribe("mixed")
        q = [await nc.subscribe("mixed", queue="g") for _ in range(3)]
        other_group = await nc.subscribe("mixed", queue="h")
        for n in range(20):
            await nc.publish("mixed", b"m")
        await self.sync(nc)
        self.assertEqual(plain.pending_msgs, 20)
        self.assertEqual(sum(s.pending_msgs for s in q), 20)
        self.assertEqual(other_group.pending_msgs, 20)

    async def test_queue_with_wildcard(self):
        nc = await self.connect()
        q = [await nc.subscribe("jobs.*", queue="w") for _ in range(3)]
        for n in range(10):
            await nc.publish(f"jobs.{n}", b"j")
        await self.sync(nc)
        self.assertEqual(sum(s.pending_msgs for s in q), 10)

    async def test_member_leaving_group(self):
        nc = await self.connect()
        a = await nc.subscribe("leave", queue="g")
        b = await nc.subscribe("leave", queue="g")
        await a.unsubscribe()
        for n in range(10):
            await nc.publish("leave", b"x")
        await self.sync(nc)
        self.assertEqual(b.pending_msgs, 10)


class HeaderTests(ServerTestCase):
    async def test_publish_with_headers(self):
        sub_nc = await self.connect()
        pub_nc = await self.connect()
        sub = await sub_nc.subscribe("hdr")
        await self.sync(sub_nc)
        hdrs = {"X-Trace": "abc123", "Content-Type": "text/plain"}
        await pub_nc.publish("hdr", b"body", headers=hdrs)
        msg = await self.next_msg(sub)
        self.assertEqual(msg.data, b"body")
        self.assertEqual(msg.headers, hdrs)

    async def test_headers_with_empty_payload(self):
        nc = await self.connect()
        sub = await nc.subscribe("hdr.empty")
        await nc.publish("hdr.empty", b"", headers={"K": "v"})
        msg = await self.next_msg(sub)
        self.assertEqual(msg.data, b"")
        self.assertEqual(msg.headers, {"K": "v"})

    async def test_headers_with_reply_and_wildcard_sub(self):
        nc = await self.connect()
        sub = await nc.subscribe("hdr.>")
        await nc.publish("hdr.a.b", b"p", reply="r.1", headers={"A": "1"})
        msg = await self.next_msg(sub)
        self.assertEqual((msg.subject, msg.reply, msg.data, msg.headers),
                         ("hdr.a.b", "r.1", b"p", {"A": "1"}))

    async def test_mixed_header_and_plain_messages_in_order(self):
        nc = await self.connect()
        sub = await nc.subscribe("hdr.mix")
        for i in range(20):
            if i % 2:
                await nc.publish("hdr.mix", str(i).encode(), headers={"I": str(i)})
            else:
                await nc.publish("hdr.mix", str(i).encode())
        await nc.publish("hdr.mix", END)
        got = await self.collect_until(sub, END)
        self.assertEqual([m.data for m in got], [str(i).encode() for i in range(20)])
        for i, m in enumerate(got):
            self.assertEqual(m.headers, {"I": str(i)} if i % 2 else None)


if __name__ == "__main__":
    unittest.main()
