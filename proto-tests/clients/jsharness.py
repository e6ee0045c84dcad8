# Base class of the JetStream client tests: each test gets its own server started with
# `-js -sd <fresh store dir>` (and a config file when `js_config` is set), a restart on the
# same store and port (SIGTERM, or SIGKILL for crash tests), and small helpers for the
# JetStream replies the tests look at.

import asyncio
import os
import shutil
import signal
import tempfile

import nats.js.errors

from harness import TIMEOUT, ServerTestCase
from server import Server


def js_server(store, config_text=None, extra=(), binary=None):
    """A Server (not started) for JetStream on `store`, with an optional config file."""
    args = ["-js", "-sd", store] + list(extra)
    if config_text is not None:
        path = os.path.join(store, "..", os.path.basename(store) + ".conf")
        with open(path, "w") as f:
            f.write(config_text)
        args += ["-c", os.path.abspath(path)]
    return Server(args, binary=binary)


def kill9(server):
    """SIGKILL the server and wait for it: no shutdown code runs."""
    if server.proc is not None and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=server.STOP_TIMEOUT)
    server.proc = None


class JsTestCase(ServerTestCase):
    """A fresh JetStream server per test. `js_config`: text of a config file, or None."""

    js_config = None

    async def asyncSetUp(self):
        self.workdir = tempfile.mkdtemp(prefix="tern-js-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.store = os.path.join(self.workdir, "sd")
        os.mkdir(self.store)
        await super().asyncSetUp()

    def make_server(self):
        return js_server(self.store, self.js_config)

    async def restart(self, kill=False):
        """Stop (SIGTERM, or SIGKILL with kill=True) and start on the same store and port."""
        port = self.server.port
        if kill:
            await asyncio.to_thread(kill9, self.server)
        else:
            await asyncio.to_thread(self.server.stop)
        await asyncio.to_thread(self.server.start, port)

    async def js_connect(self, **kw):
        nc = await self.connect(**kw)
        return nc, nc.jetstream(timeout=TIMEOUT)

    async def api_error(self, coro):
        """Awaits `coro`, which must fail with a JetStream API error; returns the error."""
        with self.assertRaises(nats.js.errors.APIError) as cm:
            await coro
        return cm.exception
