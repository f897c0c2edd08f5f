"""The citizen page in a real headless Chromium: served over HTTP from loopback, DOM checked
exactly, screenshot saved under the test's tmp_path."""
from __future__ import annotations

import datetime as dt
import http.server
import re
import socket
import threading
from contextlib import contextmanager

import pytest

from streams.account import new_account, register
from streams.citizen_page import render_error_page, render_login_page, render_page
from streams.citizen_view import citizen_item, fold, payments_response
from tests import browser
from tests.conftest import FK, GOTEBORG, STOCKHOLM, payment

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not browser.available(), reason="chromium missing: bash scripts/system-deps.sh")]

PAYEE = "198112189876"
REPRESENTATIVE = "197001011233"
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc)
TODAY = dt.date(2026, 11, 25)
NAMES = {STOCKHOLM.payer_id: STOCKHOLM.name, GOTEBORG.payer_id: GOTEBORG.name, FK.payer_id: FK.name}


def state_of(viewer, *accounts_events):
    state = None
    for payee, events in accounts_events:
        account = new_account(payee)
        for i, event in enumerate(events):
            outcome = register(account, event, NOW + dt.timedelta(seconds=i))
            state = fold(state, citizen_item(outcome.entry, NAMES[event["payer_id"]], viewer))
    return state


def demo_state():
    return state_of(PAYEE, (PAYEE, [
        payment(STOCKHOLM, PAYEE, "s-sep", "EXECUTED", 4_500_00, payout=dt.date(2026, 9, 25)),
        payment(STOCKHOLM, PAYEE, "s-oct", "EXECUTED", 4_600_00, payout=dt.date(2026, 10, 23)),
        payment(FK, PAYEE, "fk-oct", "EXECUTED", 12_345_67, category="SICKNESS_BENEFIT", payout=dt.date(2026, 10, 20)),
        payment(FK, PAYEE, "fk-jun", "EXECUTED", 999_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 6, 18)),
        payment(FK, PAYEE, "fk-jun", "RECALLED", 999_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 6, 18)),
        payment(GOTEBORG, PAYEE, "g-trv", "EXECUTED", 250_00, category="TRAVEL_EXPENSE", payout=dt.date(2026, 3, 3)),
        payment(STOCKHOLM, PAYEE, "s-nov", "PLANNED", 4_600_00, payout=dt.date(2026, 11, 25)),
        payment(FK, PAYEE, "fk-late", "PLANNED", 1_000_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 11, 20)),
        payment(FK, PAYEE, "fk-dec", "PLANNED", 2_000_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 12, 18)),
        payment(FK, PAYEE, "fk-dec", "CANCELLED", 2_000_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 12, 18)),
    ]))


class _Pages(http.server.BaseHTTPRequestHandler):
    pages: dict[str, str] = {}
    requests: list[str] = []

    def do_GET(self):  # noqa: N802
        self.requests.append(self.path)
        body = self.pages.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        data = body.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextmanager
def serve(pages: dict[str, str]):
    """A tiny HTTP server on a free loopback port serving ``pages`` (path -> HTML)."""
    handler = type("Pages", (_Pages,), {"pages": pages, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_page_shows_exact_rows_and_totals(tmp_path):
    response = payments_response(demo_state(), TODAY)
    html = render_page(response, "Anna Andersson")
    with serve({"/mina-utbetalningar": html}) as (base, requests):
        shot = tmp_path / "mina-utbetalningar.png"
        page = browser.load(base + "/mina-utbetalningar", screenshot=shot)
    assert requests == ["/mina-utbetalningar"]  # nothing else fetched: no external resources
    dom = page.dom
    assert '<html lang="sv">' in dom
    assert browser.element_text(dom, "person") == "Anna Andersson"
    assert browser.element_text(dom, "total-utbetalt") == "21 695,67 kr"
    assert browser.element_text(dom, "total-kommande") == "5 600,00 kr"
    assert browser.table_rows(dom, "kommande") == [
        ["2026-11-20", "Försäkringskassan till konto ****6789", "Sjukpenning", "2026-11-01 – 2026-11-30", "1 000,00 kr",
         "Planerad, ej bekräftad"],
        ["2026-11-25", "Stockholms kommun till konto ****6789", "Ekonomiskt bistånd", "2026-11-01 – 2026-11-30",
         "4 600,00 kr", "Planerad"],
    ]
    assert browser.table_rows(dom, "historik") == [
        ["2026-10-23", "Stockholms kommun till konto ****6789", "Ekonomiskt bistånd", "2026-10-01 – 2026-10-31",
         "4 600,00 kr", "Utbetald"],
        ["2026-10-20", "Försäkringskassan till konto ****6789", "Sjukpenning", "2026-10-01 – 2026-10-31",
         "12 345,67 kr", "Utbetald"],
        ["2026-09-25", "Stockholms kommun till konto ****6789", "Ekonomiskt bistånd", "2026-09-01 – 2026-09-30",
         "4 500,00 kr", "Utbetald"],
        ["2026-06-18", "Försäkringskassan till konto ****6789", "Sjukpenning", "2026-06-01 – 2026-06-30",
         "999,00 kr", "Återkallad"],
        ["2026-03-03", "Göteborgs kommun till konto ****6789", "Reseersättning", "2026-03-01 – 2026-03-31",
         "250,00 kr", "Utbetald"],
    ]
    assert browser.table_rows(dom, "makulerade") == [
        ["2026-12-18", "Försäkringskassan till konto ****6789", "Sjukpenning", "2026-12-01 – 2026-12-31",
         "2 000,00 kr", "Makulerad"]]
    monthly = {browser.text_of(row[0]): browser.text_of(row[1]) for row in re.findall(
        r'<tr><th scope="row">([^<]+)</th><td class="amount">([^<]+)</td></tr>', dom)}
    assert len(monthly) == 12
    assert {k: v for k, v in monthly.items() if v != "0,00 kr"} == {
        "mars 2026": "250,00 kr", "september 2026": "4 500,00 kr", "oktober 2026": "16 945,67 kr"}
    assert "16&nbsp;945,67&nbsp;kr" in dom  # the amounts keep their non-breaking spaces
    assert len(re.findall(r"<rect ", dom)) == 12
    assert '<desc id="diagram-beskrivning">Stapeldiagram. Totalt 21' in dom
    assert "<script" not in dom and "9123456789" not in dom and PAYEE not in dom
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_representative_paging_and_filter_links(tmp_path):
    events = [payment(FK, PAYEE, f"fk{m}", "EXECUTED", 100_00 * m, category="SICKNESS_BENEFIT",
                      representative_id=REPRESENTATIVE, payout=dt.date(2026, m, 18)) for m in range(1, 11)]
    state = state_of(REPRESENTATIVE, (PAYEE, events))
    response = payments_response(state, TODAY, date_from="2026-01-01", date_to="2026-12-31", page=2, page_size=4)
    html = render_page(response, "Ombud Olle", link_params={"token": "a.b.c"})
    with serve({"/mina-utbetalningar": html}) as (base, _):
        page = browser.load(base + "/mina-utbetalningar", screenshot=tmp_path / "ombud.png")
    dom = page.dom
    rows = browser.table_rows(dom, "historik")
    assert [r[0] for r in rows] == ["2026-06-18", "2026-05-18", "2026-04-18", "2026-03-18"]
    assert rows[0][1] == "Försäkringskassan Som ombud för 19811218-**** till konto ****6789"
    assert browser.element_text(dom, "sida") == "Sida 2 av 3 (10 utbetalningar)"
    assert ('href="/mina-utbetalningar?token=a.b.c&amp;from=2026-01-01&amp;to=2026-12-31&amp;page=1"' in dom)
    assert 'href="/mina-utbetalningar?token=a.b.c&amp;from=2026-01-01&amp;to=2026-12-31&amp;page=3"' in dom
    assert browser.element_text(dom, "filter-text") == (
        "Visar utbetalningar med utbetalningsdag 2026-01-01 till 2026-12-31. Summorna ovan gäller alla dina utbetalningar.")
    assert browser.element_text(dom, "kommande-tom") == "Kommande utbetalningar: du har inga planerade utbetalningar."
    assert 'id="makulerade"' not in dom


def test_data_is_escaped(tmp_path):
    state = state_of(PAYEE, (PAYEE, [payment(STOCKHOLM, PAYEE, "x", "EXECUTED", 1_00, payout=dt.date(2026, 11, 2))]))
    key = next(iter(state["payments"]))
    state["payments"][key] = {**state["payments"][key], "payer_name": '<img src=x onerror="alert(1)">Kommun & Co'}
    html = render_page(payments_response(state, TODAY), "<b>Anna</b>")
    with serve({"/p": html}) as (base, requests):
        page = browser.load(base + "/p")
    assert requests == ["/p"]  # the injected <img> was never loaded
    assert "<img" not in page.dom and "<b>Anna</b>" not in page.dom
    assert browser.table_rows(page.dom, "historik")[0][1] == '<img src=x onerror="alert(1)">Kommun & Co till konto ****6789'
    assert browser.element_text(page.dom, "person") == "<b>Anna</b>"


def test_login_and_error_pages(tmp_path):
    pages = {"/login": render_login_page(error="Token har gått ut."), "/fel": render_error_page(403, "Ingen åtkomst")}
    with serve(pages) as (base, _):
        login = browser.load(base + "/login", screenshot=tmp_path / "login.png")
        error = browser.load(base + "/fel")
    assert re.search(r'<form method="get" action="/mina-utbetalningar"><label class="block" for="token">Token</label>'
                     r'<textarea id="token" name="token"', login.dom)
    assert browser.element_text(login.dom, "fel") == "Token har gått ut."
    assert "<title>Du har inte behörighet – Mina utbetalningar</title>" in error.dom
    assert browser.element_text(error.dom, "fel") == "Ingen åtkomst"


def test_browser_helper_leaves_no_process_and_times_out(tmp_path):
    with serve({"/p": render_login_page()}) as (base, _):
        page = browser.load(base + "/p")
    assert browser.alive_with(page.profile) == []
    # a server that accepts the connection and never answers: the load must time out cleanly
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/never"
        with pytest.raises(browser.BrowserError, match="did not finish loading .* within 3 s") as info:
            browser.load(url, timeout=3)
    assert info.value.profile and browser.alive_with(info.value.profile) == []
