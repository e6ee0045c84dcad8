# nats-py's key-value and object stores against the server (issue 12): both are built by the
# client on streams and consumers (KV_<bucket> with per-subject history, last-by-subject and
# direct gets, ordered watchers; OBJ_<bucket> with chunks and a rollup meta subject). Every
# test also passes against nats-server 2.9.10 (TERN_BIN=/usr/sbin/nats-server).

import hashlib
import os
import unittest

import nats.errors
import nats.js.errors

from jsharness import JsTestCase


class KeyValue(JsTestCase):
    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.nc, self.js = await self.js_connect()
        self.kv = await self.js.create_key_value(bucket="CFG", history=5)

    async def test_put_get_update_create(self):
        kv = self.kv
        r1 = await kv.put("a", b"1")
        r2 = await kv.put("b", b"2")
        r3 = await kv.put("a", b"3")
        self.assertEqual((r1, r2, r3), (1, 2, 3))
        e = await kv.get("a")
        self.assertEqual((e.key, e.value, e.revision, e.bucket), ("a", b"3", 3, "CFG"))
        self.assertEqual((await kv.get("a", revision=1)).value, b"1")
        with self.assertRaises(nats.js.errors.KeyNotFoundError):
            await kv.get("missing")
        # create() only when absent; update() only at the expected revision.
        with self.assertRaises(nats.js.errors.KeyWrongLastSequenceError):
            await kv.create("a", b"x")
        self.assertEqual(await kv.create("c", b"new"), 4)
        self.assertEqual(await kv.update("a", b"4", last=3), 5)
        with self.assertRaises(nats.js.errors.KeyWrongLastSequenceError):
            await kv.update("a", b"5", last=3)
        status = await kv.status()
        self.assertEqual((status.bucket, status.history, status.values), ("CFG", 5, 5))

    async def test_delete_purge_history_keys(self):
        kv = self.kv
        for i in range(7):
            await kv.put("h", b"v%d" % i)
        await kv.put("k1", b"x")
        await kv.put("k2", b"y")
        hist = await kv.history("h")
        self.assertEqual([e.value for e in hist], [b"v%d" % i for i in range(2, 7)])  # history=5
        self.assertEqual(sorted(await kv.keys()), ["h", "k1", "k2"])

        await kv.delete("k1")
        with self.assertRaises(nats.js.errors.KeyNotFoundError) as cm:
            await kv.get("k1")
        self.assertEqual(cm.exception.op, "DEL")
        self.assertEqual(sorted(await kv.keys()), ["h", "k2"])
        self.assertEqual([e.operation for e in await kv.history("k1")], [None, "DEL"])
        # A create over a deleted key is allowed.
        await kv.create("k1", b"back")
        self.assertEqual((await kv.get("k1")).value, b"back")

        await kv.purge("h")  # rollup: only the purge marker stays
        hist = await kv.history("h")
        self.assertEqual([e.operation for e in hist], ["PURGE"])
        self.assertEqual(sorted(await kv.keys()), ["k1", "k2"])
        await kv.purge_deletes(olderthan=-1)
        with self.assertRaises(nats.js.errors.NoKeysError):
            await kv.history("h")

    async def test_watch(self):
        kv = self.kv
        await kv.put("w.1", b"a")
        w = await kv.watch("w.*")
        e = await w.updates(timeout=5)
        self.assertEqual((e.key, e.value), ("w.1", b"a"))
        self.assertIsNone(await w.updates(timeout=5))  # end of the initial values
        await kv.put("w.2", b"b")
        await kv.put("other", b"not watched")
        await kv.delete("w.1")
        e = await w.updates(timeout=5)
        self.assertEqual((e.key, e.value, e.operation), ("w.2", b"b", None))
        e = await w.updates(timeout=5)
        self.assertEqual((e.key, e.operation), ("w.1", "DEL"))
        with self.assertRaises(nats.errors.TimeoutError):
            await w.updates(timeout=0.3)
        await w.stop()

    async def test_bucket_survives_restart(self):
        await self.kv.put("p", b"persisted")
        await self.kv.put("p", b"persisted-2")
        await self.nc.close()
        await self.restart()
        nc, js = await self.js_connect()
        kv = await js.key_value("CFG")
        e = await kv.get("p")
        self.assertEqual((e.value, e.revision), (b"persisted-2", 2))
        self.assertEqual(await kv.put("p", b"3"), 3)
        self.assertTrue(await js.delete_key_value("CFG"))
        with self.assertRaises(nats.js.errors.BucketNotFoundError):
            await js.key_value("CFG")


class ObjectStore(JsTestCase):
    async def test_put_get_list_delete(self):
        nc, js = await self.js_connect()
        obs = await js.create_object_store("FILES")
        big = os.urandom(3 * 1024 * 1024 + 12345)  # 3 MiB and a partial chunk
        info = await obs.put("big.bin", big)
        self.assertEqual((info.name, info.size), ("big.bin", len(big)))
        self.assertGreater(info.chunks, 20)
        await obs.put("small.txt", b"hello")

        got = await obs.get("big.bin")
        self.assertEqual(len(got.data), len(big))
        self.assertEqual(hashlib.sha256(got.data).digest(), hashlib.sha256(big).digest())
        self.assertEqual((await obs.get("small.txt")).data, b"hello")
        names = sorted(o.name for o in await obs.list())
        self.assertEqual(names, ["big.bin", "small.txt"])

        # Replacing an object drops its old chunks.
        await obs.put("small.txt", b"hello again")
        self.assertEqual((await obs.get("small.txt")).data, b"hello again")

        await obs.delete("big.bin")
        with self.assertRaises(nats.js.errors.ObjectNotFoundError):
            await obs.get("big.bin")
        self.assertTrue((await obs.get_info("big.bin", show_deleted=True)).deleted)
        self.assertEqual([o.name for o in await obs.list(ignore_deletes=True)], ["small.txt"])
        status = await obs.status()
        # Only small.txt's chunk and the two meta messages remain.
        self.assertLess(status.size, 4096)
        self.assertTrue(await js.delete_object_store("FILES"))


if __name__ == "__main__":
    unittest.main()
