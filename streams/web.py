"""Answering an HTTP request on the worker that owns a key.

Faust's router knows which worker owns each table partition; ``for_key`` answers locally
when that is this worker and forwards the request otherwise, body and auth headers
included (Faust's own ``route_req`` drops the body, which a POST needs). A forwarded
request carries a header so it is never forwarded twice.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from .app import app

ROUTED = "X-Tkonto-Routed"
FORWARD_REQUEST = ("Authorization", "Cookie", "Content-Type", "Accept")
FORWARD_RESPONSE = ("Location", "Set-Cookie", "WWW-Authenticate")


def _ident(url) -> tuple[str, int]:
    return (url.host or "", int(url.port or 80))


async def for_key(web, request, table, key: bytes, local: Callable[[], Awaitable]):
    if request.headers.get(ROUTED):
        return await local()
    try:
        owner = app.router.key_store(table.name, key)
    except KeyError:  # no assignment known yet (rebalancing): answer with what is here
        return await local()
    if _ident(owner) == _ident(app.conf.canonical_url):
        return await local()
    headers = {h: request.headers[h] for h in FORWARD_REQUEST if h in request.headers}
    headers[ROUTED] = "1"
    url = request.url.with_host(owner.host).with_port(int(owner.port))
    async with app.http_client.request(method=request.method, url=url, headers=headers,
                                       data=await request.read(), allow_redirects=False) as response:
        return web.bytes(await response.read(), content_type=response.content_type, status=response.status,
                         headers={h: response.headers[h] for h in FORWARD_RESPONSE if h in response.headers})
