"""Answering an HTTP request on the worker that owns a key.

The owner is found from the pipeline's partition announcements (``owners``: the citizen
views and the review cases).
``for_key`` answers locally when the owner is this worker and forwards the request otherwise, body and auth headers
included (Faust's own ``route_req`` drops the body, which a POST needs). A forwarded
request carries a header so it is never forwarded twice.
"""
from __future__ import annotations

import json
import logging
from typing import Awaitable, Callable

import aiohttp
from yarl import URL

from . import metrics
from .app import app
from .auth import AuthConfigError

log = logging.getLogger(__name__)

ROUTED = "X-Tkonto-Routed"
FORWARD_REQUEST = ("Authorization", "Cookie", "Content-Type", "Accept")
FORWARD_RESPONSE = ("Location", "Set-Cookie", "WWW-Authenticate")


def ident(url) -> tuple[str, int]:
    """(host, port) of a URL (yarl or string)."""
    if isinstance(url, str):
        url = URL(url)
    return (url.host or "", int(url.port or 80))


class OwnerUnreachable(Exception):
    """The worker that holds a key does not answer (killed, or gone in a rebalance whose new
    owners have not announced yet), or the request reached a worker that does not hold the
    key's partition (restored) now: 503, try again."""

    status = 503


async def for_key(web, request, owner: tuple[str, int] | None, local: Callable[[], Awaitable], endpoint: str,
                  unreachable: Callable[[Exception], object] | None = None,
                  held: Callable[[], bool] | None = None):
    """Answer here when this worker owns the key (or no owner is known: rebalancing, or the
    request was forwarded here), else forward the request to the owner. ``held``: whether
    this worker holds the key's partition, restored; answered here without it, a request
    would get "nothing" (no payments, no such case) for data that is on another worker.
    An owner that cannot be reached, or a partition not held here, is answered with
    ``unreachable(error)``, by default a JSON 503 counted under ``endpoint``."""
    def retry_later(reason: str):
        error = OwnerUnreachable(f"{reason}: its partitions are being reassigned; try again in a few seconds")
        return unreachable(error) if unreachable is not None else json_error(web, endpoint, error)

    if request.headers.get(ROUTED) or owner is None or owner == ident(app.conf.canonical_url):
        if held is not None and not held():
            return retry_later("this worker does not hold that data now")
        return await local()
    headers = {h: request.headers[h] for h in FORWARD_REQUEST if h in request.headers}
    headers[ROUTED] = "1"
    url = request.url.with_host(owner[0]).with_port(owner[1])
    try:
        async with app.http_client.request(method=request.method, url=url, headers=headers,
                                           data=await request.read(), allow_redirects=False) as response:
            return web.bytes(await response.read(), content_type=response.content_type, status=response.status,
                             headers={h: response.headers[h] for h in FORWARD_RESPONSE if h in response.headers})
    except aiohttp.ClientConnectionError as exc:
        log.warning("the owner %s:%d of a %s request did not answer: %s", owner[0], owner[1], endpoint, exc)
        return retry_later(f"the worker that holds this data ({owner[0]}:{owner[1]}) does not answer")


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
