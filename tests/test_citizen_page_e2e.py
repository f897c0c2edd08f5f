"""The citizen page served by a real worker, fed through the real broker, in real headless Chromium."""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from streams.auth import issue_token
from streams.identity import make_person
from streams.observe import wait_until
from tests import browser
from tests.conftest import FK, STOCKHOLM, payment

pytestmark = [pytest.mark.broker, pytest.mark.browser]

ME = make_person(dt.date(1984, 10, 12), 321)
TODAY = dt.datetime.now(dt.timezone.utc).date()


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium missing: run `make system` (make test does)")
def test_the_page_shows_exactly_my_payments(pipeline_factory, tmp_path):
    pipe = pipeline_factory([STOCKHOLM, FK])
    worker = pipe.start_worker()
    sth, fk = pipe.client(STOCKHOLM), pipe.client(FK)
    past = TODAY - dt.timedelta(days=10)
    sth.publish(payment(STOCKHOLM, ME, "s1", "EXECUTED", 4321_50, payout=past))
    sth.publish(payment(STOCKHOLM, ME, "s2", "EXECUTED", 1000_00, payout=past - dt.timedelta(days=31)))
    fk.publish(payment(FK, ME, "f1", "PLANNED", 12000_00, category="SICKNESS_BENEFIT",
                       payout=TODAY + dt.timedelta(days=15)))
    sth.flush()
    fk.flush()
    pipe.wait_drained()
    token = issue_token(pipe.settings.jwt_secret, ME, "citizen", 600)

    def ready():
        status, body = worker.get("/api/v1/me/payments", headers={"Authorization": f"Bearer {token}"})
        return status == 200 and b'"f1"' in body and b'"s2"' in body
    assert wait_until(ready, 20)

    shot = tmp_path / "mina-utbetalningar.png"
    page = browser.load(f"{worker.url}/mina-utbetalningar?token={token}", screenshot=shot)
    assert shot.stat().st_size > 10_000
    dom = page.dom
    assert "Mina utbetalningar" in dom
    history = browser.table_rows(dom, "historik")
    upcoming = browser.table_rows(dom, "kommande")
    history_dates = TODAY - dt.timedelta(days=10), TODAY - dt.timedelta(days=41)
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in history] == [
        (history_dates[0].isoformat(), "Stockholms kommun till konto ****6789", "Ekonomiskt bistånd", "4 321,50 kr", "Utbetald"),
        (history_dates[1].isoformat(), "Stockholms kommun till konto ****6789", "Ekonomiskt bistånd", "1 000,00 kr", "Utbetald")]
    assert [(r[1], r[2], r[4], r[5]) for r in upcoming] == [
        ("Försäkringskassan till konto ****6789", "Sjukpenning", "12 000,00 kr", "Planerad")]
    assert browser.element_text(dom, "total-utbetalt").replace("\u00a0", " ") == "5 321,50 kr"
    assert browser.element_text(dom, "total-kommande").replace("\u00a0", " ") == "12 000,00 kr"
    assert ME not in dom  # the page names the person without the full identity number
    assert token not in dom  # the link's token went into an HttpOnly cookie, not the page

    # Without a token or cookie: the login page, not anyone's payments.
    anonymous = browser.load(f"{worker.url}/mina-utbetalningar")
    assert "Logga in" in anonymous.dom and "historik" not in anonymous.dom
