# Cluster failover: a nats-py client connected to node A of a two-node cluster
# (B routes to A), given only A's URL, learns B from the INFO's connect_urls;
# when A is killed (SIGKILL) it reconnects to B, re-sends its SUBs there, and a
# subscription made before the failover receives messages published on B.
# Routes and remote interest are watched in /routez on the monitoring ports.

import asyncio
import json
import unittest
import urllib.request

from nats.aio.client import Client as NATS

from harness import TIMEOUT
from server import HOST, Server, free_port

SLOW = 10.0  # routes forming, interest propagating, failing over


class ClusterNode(Server):
    """A server with a cluster port and a monitoring port of its own."""

    def __init__(self, name, cluster, routes=()):
        self.cport = free_port()
        self.mport = free_port()
        args = ["-n", name, "-m", str(self.mport),
                "--cluster", f"nats://{HOST}:{self.cport}", "--cluster_name", cluster]
        if routes:
            args += ["--routes", ",".join(routes)]
        super().__init__(args)
        self.name = name

    @property
    def route_url(self):
        return f"nats://{HOST}:{self.cport}"

    def routez(self):
        url = f"http://{HOST}:{self.mport}/routez?subs=1"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return json.loads(r.read().decode())

    def kill(self):
        """SIGKILL: no lame duck, no goodbye to clients or routes."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=self.STOP_TIMEOUT)
            self.proc = None


class ClusterFailoverTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        asyncio.get_running_loop().slow_callback_duration = 2.0
        self.clients = []
        self.client_errors = []
        self.a = ClusterNode("A", "pyc")
        self.addCleanup(self.a.close)
        await asyncio.to_thread(self.a.start)
        self.b = ClusterNode("B", "pyc", routes=[self.a.route_url])
        self.addCleanup(self.b.close)
        await asyncio.to_thread(self.b.start)

    async def asyncTearDown(self):
        for nc in self.clients:
            if not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.close(), TIMEOUT)
                except Exception:
                    pass
        for n in (self.a, self.b):
            await asyncio.to_thread(n.stop)

    async def connect(self, url, **kw):
        async def record(e):
            self.client_errors.append(e)

        kw.setdefault("error_cb", record)
        kw.setdefault("connect_timeout", TIMEOUT)
        kw.setdefault("allow_reconnect", False)
        nc = NATS()
        await nc.connect(servers=[url], **kw)
        self.clients.append(nc)
        return nc

    async def sync(self, nc):
        # Two flushes: see harness.ServerTestCase.sync.
        await nc.flush(timeout=TIMEOUT)
        await nc.flush(timeout=TIMEOUT)

    async def wait_for(self, cond, what, timeout=SLOW):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if await asyncio.to_thread(self._safely, cond):
                return
            if loop.time() > deadline:
                self.fail(f"timed out after {timeout}s waiting for {what}; client errors: "
                          f"{self.client_errors!r}\nA log:\n{self.a.log()}\nB log:\n{self.b.log()}")
            await asyncio.sleep(0.05)

    @staticmethod
    def _safely(cond):
        try:
            return cond()
        except OSError:  # monitoring port not answering yet
            return False

    @staticmethod
    def routed_subjects(node):
        """Subjects whose remote interest `node` knows (on any of its routes)."""
        subs = set()
        for r in node.routez().get("routes") or []:
            subs.update(r.get("subscriptions_list") or [])
        return subs

    async def test_client_fails_over_to_the_node_it_learned_from_connect_urls(self):
        # The route forms: each side shows one route.
        await self.wait_for(
            lambda: all(n.routez().get("num_routes") == 1 for n in (self.a, self.b)),
            "the route between A and B")

        events = {"disconnected": asyncio.Event(), "reconnected": asyncio.Event()}

        async def on_disc():
            events["disconnected"].set()

        async def on_recon():
            events["reconnected"].set()

        nc = await self.connect(self.a.url, allow_reconnect=True, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.2, dont_randomize=True,
                                disconnected_cb=on_disc, reconnected_cb=on_recon)
        self.assertEqual(nc.connected_url.port, self.a.port)
        self.assertEqual(nc._server_info.get("cluster"), "pyc")
        # B is learned from connect_urls (in the first INFO, or an async one).
        await self.wait_for(
            lambda: any(u.port == self.b.port for u in nc.discovered_servers),
            f"B ({self.b.url}) among the discovered servers")

        received = []

        async def cb(msg):
            received.append(msg.data)

        await nc.subscribe("failover.subj", cb=cb)
        await self.sync(nc)
        # Publishers on B see the subscription on A through the route.
        await self.wait_for(lambda: "failover.subj" in (self.routed_subjects(self.b)),
                            "B to know A's subscription")
        on_b = await self.connect(self.b.url)
        await on_b.publish("failover.subj", b"via-route")
        await self.sync(on_b)
        await self.wait_for(lambda: received == [b"via-route"], "the message routed from B")

        # A dies; the client moves to B.
        await asyncio.to_thread(self.a.kill)
        await asyncio.wait_for(events["disconnected"].wait(), SLOW)
        await asyncio.wait_for(events["reconnected"].wait(), SLOW)
        self.assertTrue(nc.is_connected)
        self.assertEqual(nc.connected_url.port, self.b.port)
        await self.sync(nc)  # the SUB was re-sent to B before this PING

        # The old subscription receives what is published on B, by another client ...
        await on_b.publish("failover.subj", b"after-other")
        await self.sync(on_b)
        # ... and by the failed-over client itself.
        await nc.publish("failover.subj", b"after-self")
        await self.sync(nc)
        await self.wait_for(lambda: len(received) >= 3, "messages after the failover")
        self.assertEqual(sorted(received[1:]), [b"after-other", b"after-self"])

        # Request/reply on the surviving node works for the moved client.
        async def responder(msg):
            await msg.respond(b"re:" + msg.data)

        await on_b.subscribe("failover.svc", cb=responder)
        await self.sync(on_b)
        resp = await nc.request("failover.svc", b"x", timeout=TIMEOUT)
        self.assertEqual(resp.data, b"re:x")


if __name__ == "__main__":
    unittest.main()
