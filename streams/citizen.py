"""The citizen interface on the worker: the citizen-view table, its API and the page.

The citizen topic carries ledger entries keyed by viewer (the payee, and the
representative when there is one). Each viewer's view lives in the ``citizen-views``
store, partitioned like the topic; a request for a person is routed to the worker that
owns that person's partition (``owners``, with the key taken from the verified token,
never from the URL), so any worker answers for anyone.
"""
from __future__ import annotations

import datetime as dt
import logging

from . import metrics
from .app import app, catalogue, codec, settings, state_store
from .auth import AuthConfigError, AuthError, verify, verify_token
from .citizen_page import PAGE_PATH, render_error_page, render_login_page, render_page
from .citizen_view import ViewError, citizen_item, fold, item_key, payments_response, query_args
from .identity import mask
from .engine import Output, Stage
from .ingest import failed
from .owners import owners, partition_of
from .reference import current_payer
from .state import Entries
from .web import for_key, json_error, status_of

log = logging.getLogger(__name__)

VIEW_SCHEMA = "se.tkonto.state.CitizenView"
API_PATH = "/api/v1/me/payments"

citizen_topic = catalogue.citizen.name
#: changelogged per item: a change costs one item's bytes however long the person's history
views = state_store("citizen-views", VIEW_SCHEMA, citizen_topic, Entries("payments", "se.tkonto.state.CitizenViewItem"))


#: header of a citizen record whose view the ledger stage already updated (see ``show``)
SHOWN = "tkonto-shown"
SHOWN_HEADERS = [(SHOWN, b"1")]


def show(out: Output, partition: int, viewer: bytes, entry: dict, payer=None, now: dt.datetime | None = None) -> None:
    """Fold one ledger entry into the viewer's citizen view (idempotent, order-insensitive:
    the highest ledger sequence of each payment wins). ``payer``: the entry's payer, and
    ``now``: the time it is shown at, when the caller has them (the ledger stage: its clock
    for the same event, ~0.45 µs less than reading the clock again), else looked up."""
    if payer is None:
        payer = current_payer(entry["payer_id"])
    item = citizen_item(entry, payer.name if payer else entry["payer_id"], viewer.decode())
    before = views.get(partition, viewer)
    key = item_key(item)
    after = fold(before, item, key)
    if after is not before:
        views.put(partition, viewer, after, key)
        seen = now or dt.datetime.now(dt.timezone.utc)
        metrics.CITIZEN_VISIBILITY_LATENCY.observe(max(0.0, (seen - entry["event_time"]).total_seconds()))


def can_show_here(out: Output, partition: int) -> bool:
    """May the ledger stage fold a payee's own entry at once? Only when this worker owns
    the payee's citizen partition too (the same number: the same key, partitioner and
    partition count), so the view and its changelog stay with the partition's owner."""
    return partition in out.assigned.get(citizen_topic, ())


def citizen(msg, out: Output) -> None:
    """Stage: one ledger entry for a viewer -> that viewer's citizen view."""
    headers = msg.headers()
    if headers and (SHOWN, b"1") in headers:  # the ledger stage folded it already, and its changelog is written
        out.read_settled(citizen_topic)
        return
    show(out, msg.partition(), msg.key(), codec.decode(msg.value(), expect="LedgerEntry"))


stage = Stage("citizen", [citizen_topic], citizen, failed("citizen"))
stores = [views]


def local_view(key: bytes) -> dict | None:
    """The view of ``key`` if this worker holds its partition (None: no payments yet)."""
    return views.peek(partition_of(key, settings.partitions), key)


async def _for_person(web, request, person: str, endpoint: str, respond, unreachable=None):
    """Answer on the worker that owns the person's partition (forwarded there if need be);
    the request is counted where it is answered, once (``web.for_key``: ``unreachable``)."""
    key = person.encode()

    async def local():
        metrics.API_REQUESTS.labels(endpoint, "200").inc()
        return respond(local_view(key))
    return await for_key(web, request, owners.address(citizen_topic, key), local, endpoint, unreachable,
                         held=lambda: views.serves(partition_of(key, settings.partitions)))


@app.page(API_PATH)
async def my_payments(web, request):
    try:
        principal = verify(settings.jwt_secret, request.headers.get("Authorization"), "citizen")
        args = query_args(request.query)
        today = dt.datetime.now(dt.timezone.utc).date()
        payments_response(None, today, **args)  # validate the query before any routing
    except (AuthError, ViewError, AuthConfigError) as exc:
        return json_error(web, "me_payments", exc)
    log.debug("payments for %s", mask(principal.subject))
    return await _for_person(web, request, principal.subject, "me_payments",
                             lambda view: web.json(payments_response(view, today, **args)))


COOKIE = "tkonto_session"


@app.page(PAGE_PATH)
async def my_payments_page(web, request):
    """The page. A ``?token=`` link sets an HttpOnly cookie and redirects to a clean URL,
    so the token does not stay in the address bar, history or access logs."""
    query = dict(request.query)
    if "logout" in query:
        response = web.html(render_login_page())
        response.del_cookie(COOKIE, path=PAGE_PATH)
        return response
    token = query.pop("token", None)
    try:
        if token:
            verify_token(settings.jwt_secret, token, "citizen")
            query_args(query)
            response = web.html("", status=303, headers={"Location": _page_url(query)})
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path=PAGE_PATH, max_age=3600)
            metrics.API_REQUESTS.labels("page", "303").inc()
            return response
        token = request.cookies.get(COOKIE)
        if not token:
            metrics.API_REQUESTS.labels("page", "200").inc()
            return web.html(render_login_page())
        principal = verify_token(settings.jwt_secret, token, "citizen")
        args = query_args(query)
        today = dt.datetime.now(dt.timezone.utc).date()
        payments_response(None, today, **args)
    except (AuthError, ViewError, AuthConfigError) as exc:
        return _page_error(web, exc)
    return await _for_person(
        web, request, principal.subject, "page",
        lambda view: web.html(render_page(payments_response(view, today, **args), person_label(principal.subject))),
        lambda exc: _page_error(web, exc))


def _page_error(web, exc: Exception):
    """The page's answer to a request error: an HTML page with its status, counted."""
    status = status_of(exc)
    metrics.API_REQUESTS.labels("page", str(status)).inc()
    return web.html(render_error_page(status, str(exc)), status=status)


def _page_url(query: dict) -> str:
    from urllib.parse import urlencode
    return PAGE_PATH + (f"?{urlencode(query)}" if query else "")


def person_label(person_id: str) -> str:
    """How the page names the logged-in person: birth date, serial hidden (19811218-****)."""
    return f"{person_id[:8]}-****" if len(person_id) == 12 else person_id
