# Authentication: server started with --user/--pass or --auth <token>;
# correct credentials (options or URL userinfo) connect and work, wrong or
# missing ones fail with the server's "-ERR 'Authorization Violation'",
# which nats-py 2.16 raises from connect() as errors.Error (see
# harness.is_auth_error) and also passes to error_cb. INFO has auth_required.

import asyncio
import json
import socket
import unittest

from nats import errors

from harness import TIMEOUT, ServerTestCase, is_auth_error
from server import HOST


class AuthMixin:
    async def assert_connect_fails_with_auth_error(self, url=None, **kw):
        seen = []

        async def ecb(e):
            seen.append(e)

        with self.assertRaises(errors.Error) as cm:
            await self.connect(url, error_cb=ecb, allow_reconnect=False, **kw)
        self.assertTrue(is_auth_error(cm.exception),
                        f"expected auth error, got {cm.exception!r}")
        self.assertTrue(seen and all(is_auth_error(e) for e in seen), seen)

    async def roundtrip(self, nc):
        sub = await nc.subscribe("auth.rt")
        await nc.publish("auth.rt", b"ok")
        msg = await sub.next_msg(timeout=TIMEOUT)
        self.assertEqual(msg.data, b"ok")

    def raw_info(self):
        with socket.create_connection((HOST, self.server.port), timeout=TIMEOUT) as s:
            buf = b""
            while not buf.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        self.assertTrue(buf.startswith(b"INFO "), buf)
        return json.loads(buf[5:].strip())


class UserPassAuthTests(AuthMixin, ServerTestCase):
    server_args = ("--user", "alice", "--pass", "s3cr3t")

    async def test_info_advertises_auth_required(self):
        info = await asyncio.to_thread(self.raw_info)
        self.assertIs(info.get("auth_required"), True)

    async def test_user_password_success(self):
        nc = await self.connect(user="alice", password="s3cr3t")
        await self.roundtrip(nc)

    async def test_user_password_in_url(self):
        nc = await self.connect(self.server.url_with("alice:s3cr3t"))
        await self.roundtrip(nc)

    async def test_wrong_password(self):
        await self.assert_connect_fails_with_auth_error(user="alice", password="nope")

    async def test_wrong_user(self):
        await self.assert_connect_fails_with_auth_error(user="bob", password="s3cr3t")

    async def test_no_credentials(self):
        await self.assert_connect_fails_with_auth_error()

    async def test_token_against_user_pass_server(self):
        await self.assert_connect_fails_with_auth_error(token="s3cr3t")

    async def test_failed_auth_does_not_affect_others(self):
        good = await self.connect(user="alice", password="s3cr3t")
        await self.assert_connect_fails_with_auth_error(user="alice", password="x")
        await self.roundtrip(good)

    async def test_retries_exhausted_raises_no_servers(self):
        # With reconnect allowed nats-py retries, reporting each auth failure
        # to error_cb, then raises NoServersError.
        seen = []

        async def ecb(e):
            seen.append(e)

        with self.assertRaises(errors.NoServersError):
            await self.connect(user="alice", password="bad", error_cb=ecb,
                               allow_reconnect=True, max_reconnect_attempts=1,
                               reconnect_time_wait=0.1)
        # Each attempt reports the auth error; nats-py may also report an
        # OSError (ECONNRESET) when the server closes right after the -ERR.
        self.assertTrue(any(is_auth_error(e) for e in seen), seen)
        self.assertTrue(all(is_auth_error(e) or isinstance(e, OSError) for e in seen), seen)


class TokenAuthTests(AuthMixin, ServerTestCase):
    server_args = ("--auth", "tok-123")

    async def test_info_advertises_auth_required(self):
        info = await asyncio.to_thread(self.raw_info)
        self.assertIs(info.get("auth_required"), True)

    async def test_token_success(self):
        nc = await self.connect(token="tok-123")
        await self.roundtrip(nc)

    async def test_token_in_url(self):
        nc = await self.connect(self.server.url_with("tok-123"))
        await self.roundtrip(nc)

    async def test_wrong_token(self):
        await self.assert_connect_fails_with_auth_error(token="tok-999")

    async def test_no_token(self):
        await self.assert_connect_fails_with_auth_error()

    async def test_user_pass_against_token_server(self):
        await self.assert_connect_fails_with_auth_error(user="tok-123", password="x")


class NoAuthTests(AuthMixin, ServerTestCase):
    async def test_info_without_auth_required(self):
        info = await asyncio.to_thread(self.raw_info)
        self.assertFalse(info.get("auth_required", False))

    async def test_credentials_ignored_when_no_auth(self):
        nc = await self.connect(user="any", password="thing")
        await self.roundtrip(nc)


if __name__ == "__main__":
    unittest.main()
