# nats-py's JetStream stream API against the server (issue 11): streams added, updated,
# purged and deleted; publishes with every header JetStream reads (Nats-Msg-Id dedupe,
# Nats-Expected-Stream/-Last-Sequence/-Last-Subject-Sequence/-Last-Msg-Id, Nats-Rollup);
# get by sequence, by last subject and direct get; limits and discard; and a restart with
# everything intact. Error codes are nats-server 2.9's (JETSTREAM-NOTES.md).

import asyncio
import unittest

import nats.errors
import nats.js.errors
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from jsharness import JsTestCase


class StreamAdmin(JsTestCase):
    async def test_add_update_purge_delete(self):
        nc, js = await self.js_connect()
        info = await js.add_stream(name="ORDERS", subjects=["orders.*"])
        self.assertEqual(info.config.name, "ORDERS")
        self.assertEqual(info.state.messages, 0)
        # Adding the same config again is fine; a different one is 10058.
        await js.add_stream(name="ORDERS", subjects=["orders.*"])
        e = await self.api_error(js.add_stream(name="ORDERS", subjects=["other"]))
        self.assertEqual(e.err_code, 10058)

        for i in range(10):
            await js.publish(f"orders.{i % 2}", b"o%d" % i)
        info = await js.update_stream(StreamConfig(name="ORDERS", subjects=["orders.*", "more"],
                                                   max_msgs=8))
        self.assertEqual(info.config.subjects, ["orders.*", "more"])
        self.assertEqual(info.state.messages, 8)  # the new limit applies at once
        self.assertEqual(info.state.first_seq, 3)
        ack = await js.publish("more", b"m")
        self.assertEqual((ack.stream, ack.seq), ("ORDERS", 11))
        # Storage cannot change (10052).
        e = await self.api_error(js.update_stream(StreamConfig(
            name="ORDERS", subjects=["orders.*"], storage=StorageType.MEMORY)))
        self.assertEqual(e.err_code, 10052)

        # Purge one subject, then keep the newest 2, then everything.
        self.assertTrue(await js.purge_stream("ORDERS", subject="orders.0"))
        info = await js.stream_info("ORDERS")
        self.assertEqual(info.state.messages, 5)  # orders.1 x4 + more
        self.assertTrue(await js.purge_stream("ORDERS", keep=2))
        info = await js.stream_info("ORDERS")
        self.assertEqual((info.state.messages, info.state.last_seq), (2, 11))
        self.assertTrue(await js.purge_stream("ORDERS"))
        info = await js.stream_info("ORDERS")
        self.assertEqual((info.state.messages, info.state.first_seq), (0, 12))

        names = [s.config.name for s in await js.streams_info()]
        self.assertEqual(names, ["ORDERS"])
        self.assertTrue(await js.delete_stream("ORDERS"))
        with self.assertRaises(nats.js.errors.NotFoundError):
            await js.stream_info("ORDERS")
        # No stream on the subject any more: no responders.
        with self.assertRaises(nats.js.errors.NoStreamResponseError):
            await js.publish("orders.1", b"x")

    async def test_find_stream_and_account_info(self):
        nc, js = await self.js_connect()
        await js.add_stream(name="A", subjects=["a.>"])
        await js.add_stream(name="B", subjects=["b"], storage=StorageType.MEMORY)
        self.assertEqual(await js.find_stream_name_by_subject("a.x.y"), "A")
        await js.publish("a.1", b"12345")
        await js.publish("b", b"1")
        acct = await js.account_info()
        self.assertEqual(acct.streams, 2)
        self.assertGreater(acct.storage, 0)
        self.assertGreater(acct.memory, 0)


class PublishHeaders(JsTestCase):
    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.nc, self.js = await self.js_connect()
        await self.js.add_stream(name="S", subjects=["s.*"], duplicate_window=60.0)

    async def test_msg_id_dedupe(self):
        js = self.js
        a = await js.publish("s.a", b"1", headers={"Nats-Msg-Id": "id-1"})
        b = await js.publish("s.a", b"2", headers={"Nats-Msg-Id": "id-1"})
        c = await js.publish("s.b", b"3", headers={"Nats-Msg-Id": "id-2"})
        self.assertEqual((a.seq, a.duplicate), (1, None))
        self.assertEqual((b.seq, b.duplicate), (1, True))
        self.assertEqual((c.seq, c.duplicate), (2, None))
        self.assertEqual((await js.stream_info("S")).state.messages, 2)
        got = await js.get_msg("S", 1)
        self.assertEqual(got.data, b"1")  # the duplicate was not stored

    async def test_expected_stream(self):
        js = self.js
        ack = await js.publish("s.a", b"1", stream="S")
        self.assertEqual(ack.seq, 1)
        e = await self.api_error(js.publish("s.a", b"2", stream="OTHER"))
        self.assertEqual((e.code, e.err_code), (400, 10060))
        self.assertEqual((await js.stream_info("S")).state.messages, 1)

    async def test_expected_last_sequence(self):
        js = self.js
        await js.publish("s.a", b"1")
        ok = await js.publish("s.b", b"2", headers={"Nats-Expected-Last-Sequence": "1"})
        self.assertEqual(ok.seq, 2)
        e = await self.api_error(js.publish("s.b", b"3", headers={"Nats-Expected-Last-Sequence": "1"}))
        self.assertEqual(e.err_code, 10071)
        self.assertIn("wrong last sequence: 2", e.description)

    async def test_expected_last_subject_sequence(self):
        js = self.js
        await js.publish("s.a", b"1")  # 1
        await js.publish("s.b", b"2")  # 2
        hdr = "Nats-Expected-Last-Subject-Sequence"
        ok = await js.publish("s.a", b"3", headers={hdr: "1"})
        self.assertEqual(ok.seq, 3)
        e = await self.api_error(js.publish("s.a", b"4", headers={hdr: "1"}))
        self.assertEqual(e.err_code, 10071)
        # 0: the subject must have no message yet.
        ok = await js.publish("s.c", b"5", headers={hdr: "0"})
        self.assertEqual(ok.seq, 4)
        e = await self.api_error(js.publish("s.c", b"6", headers={hdr: "0"}))
        self.assertEqual(e.err_code, 10071)

    async def test_expected_last_msg_id(self):
        js = self.js
        await js.publish("s.a", b"1", headers={"Nats-Msg-Id": "first"})
        ok = await js.publish("s.a", b"2", headers={"Nats-Msg-Id": "second",
                                                    "Nats-Expected-Last-Msg-Id": "first"})
        self.assertEqual(ok.seq, 2)
        e = await self.api_error(js.publish("s.a", b"3", headers={"Nats-Expected-Last-Msg-Id": "first"}))
        self.assertEqual(e.err_code, 10070)
        self.assertIn("wrong last msg ID: second", e.description)

    async def test_rollup(self):
        js = self.js
        # Not allowed on S: 10111.
        e = await self.api_error(js.publish("s.a", b"x", headers={"Nats-Rollup": "sub"}))
        self.assertEqual((e.err_code, e.description), (10111, "rollup not permitted"))
        await js.add_stream(name="R", subjects=["r.*"], allow_rollup_hdrs=True)
        for i in range(3):
            await js.publish("r.a", b"a%d" % i)
            await js.publish("r.b", b"b%d" % i)
        ack = await js.publish("r.a", b"a-roll", headers={"Nats-Rollup": "sub"})
        info = await js.stream_info("R")
        self.assertEqual(info.state.messages, 4)  # r.b x3 + the rollup
        self.assertEqual((await js.get_last_msg("R", "r.a")).seq, ack.seq)
        await js.publish("r.b", b"all", headers={"Nats-Rollup": "all"})
        info = await js.stream_info("R")
        self.assertEqual((info.state.messages, info.state.first_seq), (1, 8))
        # An unknown rollup value is dropped without a reply (as nats-server does).
        with self.assertRaises(nats.errors.TimeoutError):
            await js.publish("r.a", b"x", headers={"Nats-Rollup": "bogus"}, timeout=0.5)
        self.assertEqual((await js.stream_info("R")).state.messages, 1)

    async def test_sealed_deny_delete_deny_purge(self):
        js = self.js
        await js.add_stream(name="P", subjects=["p"], deny_delete=True, deny_purge=True)
        await js.publish("p", b"1")
        e = await self.api_error(js.delete_msg("P", 1))
        self.assertEqual((e.err_code, e.description), (10057, "message delete not permitted"))
        e = await self.api_error(js.purge_stream("P"))
        self.assertEqual((e.err_code, e.description), (10110, "stream purge not permitted"))
        await js.update_stream(StreamConfig(name="P", subjects=["p"], deny_delete=True,
                                            deny_purge=True, sealed=True))
        e = await self.api_error(js.publish("p", b"2"))
        self.assertEqual((e.err_code, e.description), (10109, "invalid operation on sealed stream"))
        self.assertEqual((await js.stream_info("P")).state.messages, 1)


class GetMessages(JsTestCase):
    async def test_get_by_sequence_last_subject_and_direct(self):
        nc, js = await self.js_connect()
        await js.add_stream(name="G", subjects=["g.*"], allow_direct=True)
        for i in range(6):
            await js.publish(f"g.{'ab'[i % 2]}", b"v%d" % i, headers={"X-N": str(i)})
        m = await js.get_msg("G", 3)
        self.assertEqual((m.seq, m.subject, m.data, m.headers["X-N"]), (3, "g.a", b"v2", "2"))
        m = await js.get_last_msg("G", "g.a")
        self.assertEqual((m.seq, m.data), (5, b"v4"))
        m = await js.get_msg("G", 3, direct=True)
        self.assertEqual((m.seq, m.subject, m.data, m.headers["X-N"]), (3, "g.a", b"v2", "2"))
        m = await js.get_last_msg("G", "g.b", direct=True)
        self.assertEqual((m.seq, m.data), (6, b"v5"))
        m = await js.get_msg("G", 2, subject="g.a", next=True, direct=True)
        self.assertEqual(m.seq, 3)
        # Deleted and missing messages.
        self.assertTrue(await js.delete_msg("G", 3))
        with self.assertRaises(nats.js.errors.NotFoundError):
            await js.get_msg("G", 3)
        with self.assertRaises(nats.js.errors.NotFoundError):
            await js.get_msg("G", 3, direct=True)
        with self.assertRaises(nats.js.errors.NotFoundError):
            await js.get_last_msg("G", "g.none")
        with self.assertRaises(nats.js.errors.NotFoundError):
            await js.get_msg("G", 99)


class Limits(JsTestCase):
    async def test_max_msgs_discard_old_and_new(self):
        nc, js = await self.js_connect()
        await js.add_stream(name="OLD", subjects=["old"], max_msgs=3)
        for i in range(5):
            await js.publish("old", b"%d" % i)
        st = (await js.stream_info("OLD")).state
        self.assertEqual((st.messages, st.first_seq, st.last_seq), (3, 3, 5))

        await js.add_stream(name="NEW", subjects=["new"], max_msgs=3, discard=DiscardPolicy.NEW)
        for i in range(3):
            await js.publish("new", b"%d" % i)
        e = await self.api_error(js.publish("new", b"x"))
        self.assertEqual(e.err_code, 10077)
        self.assertIn("maximum messages exceeded", e.description)
        st = (await js.stream_info("NEW")).state
        self.assertEqual((st.messages, st.last_seq), (3, 3))

    async def test_max_bytes_per_subject_and_size(self):
        nc, js = await self.js_connect()
        # nats-server refuses when the stored bytes plus the new payload reach max_bytes,
        # counting stored messages with their overhead but the new one without it.
        await js.add_stream(name="B", subjects=["b"], max_bytes=400, discard=DiscardPolicy.NEW)
        stored = 0
        with self.assertRaises(nats.js.errors.APIError) as cm:
            for _ in range(100):
                await js.publish("b", b"x" * 150)
                stored += 1
        self.assertEqual(cm.exception.err_code, 10077)
        self.assertIn("maximum bytes exceeded", cm.exception.description)
        st = (await js.stream_info("B")).state
        self.assertEqual((st.messages, stored), (2, 2))
        self.assertLessEqual(st.bytes, 400)

        await js.add_stream(name="PS", subjects=["ps.*"], max_msgs_per_subject=2)
        for i in range(5):
            await js.publish("ps.a", b"a%d" % i)
            await js.publish("ps.b", b"b%d" % i)
        st = (await js.stream_info("PS")).state
        self.assertEqual(st.messages, 4)
        self.assertEqual((await js.get_last_msg("PS", "ps.a")).data, b"a4")

        await js.add_stream(name="SZ", subjects=["sz"], max_msg_size=10)
        await js.publish("sz", b"0123456789")
        e = await self.api_error(js.publish("sz", b"0123456789x"))
        self.assertEqual(e.err_code, 10054)

    async def test_max_age_expires_messages(self):
        nc, js = await self.js_connect()
        await js.add_stream(name="AGE", subjects=["age"], max_age=0.5)
        for i in range(3):
            await js.publish("age", b"%d" % i)
        self.assertEqual((await js.stream_info("AGE")).state.messages, 3)
        # The loop's timer removes them (nobody asks in between).
        await asyncio.sleep(1.5)
        st = (await js.stream_info("AGE")).state
        self.assertEqual((st.messages, st.first_seq, st.last_seq), (0, 4, 3))
        ack = await js.publish("age", b"again")
        self.assertEqual(ack.seq, 4)

    async def test_memory_stream(self):
        nc, js = await self.js_connect()
        await js.add_stream(name="M", subjects=["m"], storage=StorageType.MEMORY, max_msgs=2)
        for i in range(4):
            await js.publish("m", b"%d" % i)
        st = (await js.stream_info("M")).state
        self.assertEqual((st.messages, st.first_seq), (2, 3))
        self.assertEqual((await js.get_msg("M", 4)).data, b"3")


class Restart(JsTestCase):
    async def test_restart_keeps_streams_messages_and_dedupe(self):
        nc, js = await self.js_connect()
        await js.add_stream(name="K", subjects=["k.*"], duplicate_window=120.0, max_msgs_per_subject=3)
        await js.add_stream(name="MEM", subjects=["mem"], storage=StorageType.MEMORY)
        sent = {}
        for i in range(50):
            subj = f"k.{i % 7}"
            ack = await js.publish(subj, b"payload-%d" % i, headers={"Nats-Msg-Id": f"m{i}", "X-I": str(i)})
            sent[ack.seq] = (subj, b"payload-%d" % i, str(i))
        await js.publish("mem", b"gone after restart")
        # (Not the last one: nats-server 2.9 rebuilds no duplicate window at all when the
        # last sequence is deleted; tern rebuilds it from the messages that are there.)
        self.assertTrue(await js.delete_msg("K", 48))
        before = (await js.stream_info("K")).state
        await nc.close()

        await self.restart()
        nc, js = await self.js_connect()
        after = (await js.stream_info("K")).state
        self.assertEqual((after.messages, after.bytes, after.first_seq, after.last_seq, after.num_deleted),
                         (before.messages, before.bytes, before.first_seq, before.last_seq, before.num_deleted))
        kept = 0
        for seq, (subj, data, i) in sent.items():
            try:
                m = await js.get_msg("K", seq)
            except nats.js.errors.NotFoundError:
                continue
            kept += 1
            self.assertEqual((m.subject, m.data, m.headers["X-I"]), (subj, data, i))
        self.assertEqual(kept, before.messages)
        # The duplicate window was rebuilt from the stored headers.
        dup = await js.publish("k.0", b"again", headers={"Nats-Msg-Id": "m46"})
        self.assertTrue(dup.duplicate)
        ack = await js.publish("k.0", b"new")
        self.assertEqual(ack.seq, 51)
        # A memory stream does not come back (nats-server keeps no file for it either).
        with self.assertRaises(nats.js.errors.NotFoundError):
            await js.stream_info("MEM")


if __name__ == "__main__":
    unittest.main()
