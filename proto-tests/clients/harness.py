# Shared base class for the nats-py client tests: one fresh server per test
# (flags from `server_args`), connect() helper that records client errors and
# closes every client in tearDown, plus small wait/collect utilities.

import asyncio
import unittest

from nats import errors
from nats.aio.client import Client as NATS

from server import Server

TIMEOUT = 5.0  # generous per-operation timeout, seconds


class ServerTestCase(unittest.IsolatedAsyncioTestCase):
    server_args = ()

    async def asyncSetUp(self):
        # IsolatedAsyncioTestCase runs the loop in debug mode; on a busy
        # machine its "Executing <Task ...> took 0.1 seconds" notes are noise.
        asyncio.get_running_loop().slow_callback_duration = 2.0
        self.server = self.make_server()
        self.addCleanup(self.server.close)
        await asyncio.to_thread(self.server.start)
        self.clients = []
        self.client_errors = []

    def make_server(self):
        """The server of the test (not started yet)."""
        return Server(self.server_args)

    async def asyncTearDown(self):
        for nc in self.clients:
            if not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.close(), TIMEOUT)
                except Exception:
                    pass
        await asyncio.to_thread(self.server.stop)

    async def connect(self, url=None, **kw):
        async def record(e):
            self.client_errors.append(e)

        kw.setdefault("error_cb", record)
        kw.setdefault("connect_timeout", TIMEOUT)
        kw.setdefault("allow_reconnect", False)
        nc = NATS()
        try:
            await nc.connect(url or self.server.url, **kw)
        except BaseException:
            # nats-py leaves the failed attempt's socket open; close it to keep
            # the output free of ResourceWarnings.
            transport = getattr(nc, "_transport", None)
            if transport is not None:
                transport.close()
            raise
        self.clients.append(nc)
        return nc

    async def sync(self, *ncs, timeout=TIMEOUT):
        """Make sure everything each client sent so far reached the server.

        nats-py 2.16 flush() writes its PING straight to the socket while
        earlier SUB/PUB/UNSUB may still sit in the client's pending buffer
        (written by a separate flusher task), so a single flush() can return
        before the server saw them. The first flush lets the flusher run; the
        second PING is then queued behind everything sent before.
        """
        for nc in ncs:
            await nc.flush(timeout=timeout)
            await nc.flush(timeout=timeout)

    async def wait_for(self, cond, timeout=TIMEOUT, what="condition"):
        """Poll `cond()` until true; fail with `what` after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            if loop.time() > deadline:
                self.fail(f"timed out after {timeout}s waiting for {what}; "
                          f"client errors: {self.client_errors!r}")
            await asyncio.sleep(0.01)

    async def next_msg(self, sub, timeout=TIMEOUT):
        try:
            return await sub.next_msg(timeout=timeout)
        except errors.TimeoutError:
            self.fail(f"no message on {sub.subject!r} within {timeout}s; "
                      f"client errors: {self.client_errors!r}")

    async def collect_until(self, sub, sentinel, timeout=TIMEOUT):
        """Return messages from `sub` received before one with data == sentinel."""
        got = []
        while True:
            msg = await self.next_msg(sub, timeout)
            if msg.data == sentinel:
                return got
            got.append(msg)


def is_auth_error(e) -> bool:
    """How nats-py 2.16 surfaces an auth failure.

    During the CONNECT handshake it raises a plain errors.Error whose text is
    "nats: 'Authorization Violation'" (the server's -ERR text verbatim); after
    the handshake the parser lowercases -ERR text and maps it to
    errors.AuthorizationError.
    """
    if isinstance(e, errors.AuthorizationError):
        return True
    return isinstance(e, errors.Error) and "authorization violation" in str(e).lower()
