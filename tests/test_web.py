"""``web.for_key`` when the key's owner does not answer (killed, or gone in a rebalance whose
new owners have not announced yet), or the request is to be answered by a worker that does
not hold the key's partition: a clear 503, never a crash trace, a 500 or an empty answer."""
from __future__ import annotations

import asyncio
import json

from yarl import URL

from streams.app import app
from streams.broker import free_port
from streams.web import for_key


class Web:
    """Faust's web driver as ``for_key`` and ``json_error`` use it: (status, body)."""

    def bytes(self, body, content_type=None, status=200, headers=None):
        return status, body


class Request:
    method = "GET"
    headers = {"Authorization": "Bearer t"}
    url = URL("http://127.0.0.1:6066/api/v1/cases/case-1")

    async def read(self) -> bytes:
        return b""


def test_an_owner_that_does_not_answer_gets_a_503_that_says_to_retry():
    port = free_port()  # nothing listens there

    async def request(unreachable=None):
        async def local():
            raise AssertionError("answered here although another worker owns the key")
        try:
            return await for_key(Web(), Request(), ("127.0.0.1", port), local, "case", unreachable)
        finally:
            await app.http_client.close()
            app.http_client = None  # a fresh session for the next loop

    status, body = asyncio.run(request())
    assert status == 503
    error = json.loads(body)["error"]
    assert f"127.0.0.1:{port}" in error and "try again" in error
    assert asyncio.run(request(lambda exc: (exc.status, str(exc))))[0] == 503  # the caller's own answer


def test_a_worker_that_does_not_hold_the_partition_answers_503_not_nothing():
    """Owner unknown (rebalancing), or the request forwarded here by a stale claim: without
    the partition restored here, the local answer would say "no payments" / "no case"."""
    answered = []

    async def local():
        answered.append(True)
        return 200, b"{}"

    class Routed(Request):
        headers = {"Authorization": "Bearer t", "X-Tkonto-Routed": "1"}

    async def request(req, owner, held, unreachable=None):
        return await for_key(Web(), req, owner, local, "me_payments", unreachable, held=held)

    for req, owner in ((Request(), None), (Routed(), ("127.0.0.1", free_port()))):
        status, body = asyncio.run(request(req, owner, lambda: False))
        assert status == 503 and "being reassigned" in json.loads(body)["error"]
        assert asyncio.run(request(req, owner, lambda: False, lambda exc: (exc.status, "page")))[0] == 503
        assert answered == []
        assert asyncio.run(request(req, owner, lambda: True)) == (200, b"{}")  # held: answered here
        assert answered == [True]
        answered.clear()
