# Connect and flush: nats-py handshake (INFO / CONNECT / PING / PONG), the INFO
# fields the client relies on, verbose/pedantic modes, many clients at once,
# close, and flush() round trips (incl. MSG-before-PONG ordering).

import asyncio
import unittest

from harness import TIMEOUT, ServerTestCase


class ConnectTests(ServerTestCase):
    async def test_connect_and_close(self):
        nc = await self.connect()
        self.assertTrue(nc.is_connected)
        self.assertEqual(nc.connected_url.port, self.server.port)
        await nc.close()
        self.assertTrue(nc.is_closed)
        self.assertEqual(self.client_errors, [])

    async def test_server_info_fields(self):
        nc = await self.connect()
        info = nc._server_info  # the parsed INFO the client acted on
        self.assertTrue(info.get("server_id"))
        self.assertEqual(info.get("proto"), 1)
        self.assertIs(info.get("headers"), True)  # else nats-py disables headers
        self.assertEqual(info.get("max_payload"), 1048576)
        self.assertEqual(nc.max_payload, 1048576)
        self.assertIsInstance(nc.client_id, int)

    async def test_connect_with_name(self):
        nc = await self.connect(name="tern-client-test")
        await self.sync(nc)
        self.assertTrue(nc.is_connected)

    async def test_verbose_mode(self):
        # verbose=True: server must answer CONNECT and every op with +OK.
        nc = await self.connect(verbose=True)
        sub = await nc.subscribe("verbose.subj")
        await nc.publish("verbose.subj", b"v")
        msg = await self.next_msg(sub)
        self.assertEqual(msg.data, b"v")
        await self.sync(nc)
        self.assertEqual(self.client_errors, [])

    async def test_pedantic_mode(self):
        nc = await self.connect(pedantic=True)
        sub = await nc.subscribe("pedantic.subj")
        await nc.publish("pedantic.subj", b"p")
        self.assertEqual((await self.next_msg(sub)).data, b"p")

    async def test_many_clients(self):
        ncs = await asyncio.gather(*(self.connect() for _ in range(20)))
        await asyncio.gather(*(nc.flush(timeout=TIMEOUT) for nc in ncs))
        self.assertTrue(all(nc.is_connected for nc in ncs))
        ids = {nc.client_id for nc in ncs}
        self.assertEqual(len(ids), 20, "client_id in INFO should be unique")


class FlushTests(ServerTestCase):
    async def test_flush_round_trips(self):
        nc = await self.connect()
        for _ in range(10):
            await nc.flush(timeout=TIMEOUT)
        self.assertTrue(nc.is_connected)

    async def test_flush_after_publishes(self):
        nc = await self.connect()
        for i in range(1000):
            await nc.publish("flush.nobody", b"x" * 100)
        await nc.flush(timeout=TIMEOUT)
        self.assertTrue(nc.is_connected)

    async def test_own_messages_arrive_before_pong(self):
        # Server processes PUBs before the following PING, and writes the
        # resulting MSGs to this client before the PONG (see harness.sync for
        # why a single nats-py flush() is not enough to order the PING).
        nc = await self.connect()
        sub = await nc.subscribe("flush.echo")
        for i in range(10):
            await nc.publish("flush.echo", str(i).encode())
        await self.sync(nc)
        self.assertEqual(sub.pending_msgs, 10)
        for i in range(10):
            self.assertEqual((await self.next_msg(sub)).data, str(i).encode())

    async def test_other_publisher_flush_orders_delivery(self):
        # After the publisher's flush the server has routed its messages; a
        # flush by the subscriber then returns only after they were delivered.
        sub_nc = await self.connect()
        pub_nc = await self.connect()
        sub = await sub_nc.subscribe("flush.cross")
        await self.sync(sub_nc)
        for i in range(5):
            await pub_nc.publish("flush.cross", b"m")
        await self.sync(pub_nc)
        await self.sync(sub_nc)
        self.assertEqual(sub.pending_msgs, 5)


if __name__ == "__main__":
    unittest.main()
