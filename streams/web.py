"""Answering an HTTP request on the worker that owns a key.

Faust's router knows which worker owns each table partition; ``for_key`` answers locally
when that is this worker and forwards the request otherwise, body and auth headers
included (Faust's own ``route_req`` drops the body, which a POST needs). A forwarded
request carries a header so it is never forwarded twice.
"""
from __future__ import annotations

import json
from typing import Awaitable, Callable

from . import metrics
from .app import app
from .auth import AuthConfigError

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


def status_of(exc: Exception) -> int:
    """The HTTP status of a request error: its own, or 503 when the server lacks its JWT secret."""
    return 503 if isinstance(exc, AuthConfigError) else getattr(exc, "status", 500)


def json_error(web, endpoint: str, exc: Exception):
    """A JSON error answer, counted in tkonto_api_requests_total; 401 says how to authenticate."""
    status = status_of(exc)
    metrics.API_REQUESTS.labels(endpoint, str(status)).inc()
    headers = {"WWW-Authenticate": 'Bearer realm="tkonto"'} if status == 401 else None
    return web.bytes(json.dumps({"error": str(exc)}).encode(), content_type="application/json", status=status,
                     headers=headers)
