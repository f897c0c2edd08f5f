"""The citizen page "Mina utbetalningar": complete HTML5 documents, pure and synchronous.

- ``render_page(response, person_label)``: the page for one person, from the
  ``GET /api/v1/me/payments`` response (``citizen_view.payments_response``);
- ``render_login_page()``: a form to paste a bearer token;
- ``render_error_page(status, message)``: 400/401/403/404 for a browser.

No external resources at all (styles inline, the chart is inline SVG), no JavaScript:
the filter form and the paging are plain links and GET forms. Every value from data is
escaped. Swedish UI text; landmarks, real tables with captions and header scopes, and a
text alternative for the chart.
"""
from __future__ import annotations

import html
from collections.abc import Mapping
from urllib.parse import urlencode

from .citizen_view import format_sek

PAGE_PATH = "/mina-utbetalningar"

MONTHS = ("januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september", "oktober",
          "november", "december")
MONTHS_SHORT = ("jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec")

CSS = """
:root{--ink:#1b1b1b;--muted:#4a4a4a;--brand:#0b3d66;--brand-2:#1f5f99;--line:#d0d7de;--bg:#f4f6f8;
--warn-bg:#fff4e0;--warn:#7a4100;--bad-bg:#fdecec;--bad:#8c1d18;--ok-bg:#e8f3ea;--ok:#1d5e2c}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--ink);background:var(--bg)}
a{color:var(--brand-2)}
a:focus,button:focus,input:focus,textarea:focus,summary:focus{outline:3px solid #ffbf47;outline-offset:2px}
.skip{position:absolute;left:-9999px;top:0;background:#fff;padding:.5rem 1rem}
.skip:focus{left:1rem;top:1rem;z-index:10}
.wrap{max-width:64rem;margin:0 auto;padding:0 1.25rem}
header.site{background:var(--brand);color:#fff}
header.site .wrap{display:flex;justify-content:space-between;align-items:center;gap:1rem;min-height:3.5rem;
flex-wrap:wrap}
header.site .agency{font-weight:700;letter-spacing:.01em;margin:0}
header.site .who{margin:0}
main{padding:1.5rem 0 2.5rem}
h1{font-size:2rem;margin:.25rem 0 .5rem;color:var(--brand)}
h2{font-size:1.3rem;margin:0 0 .75rem;color:var(--brand)}
.lead{color:var(--muted);margin:0 0 1.25rem;max-width:46rem}
section.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:1.25rem;margin:0 0 1.25rem}
dl.totals{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:1rem;margin:0}
dl.totals div{border-left:4px solid var(--brand-2);padding:.25rem 0 .25rem .85rem}
dl.totals dt{color:var(--muted);font-size:.95rem}
dl.totals dd{margin:0;font-size:1.6rem;font-weight:700;font-variant-numeric:tabular-nums}
figure{margin:0}
figure svg{width:100%;height:auto;display:block}
figcaption{color:var(--muted);font-size:.95rem;margin-top:.5rem}
details{margin-top:.75rem}
summary{cursor:pointer;color:var(--brand-2)}
form.filter{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-end}
form.filter label{display:block;font-weight:600;font-size:.95rem}
input[type=date]{font:inherit;padding:.35rem .5rem;border:1px solid #6b7280;border-radius:4px}
button,.button{font:inherit;font-weight:600;background:var(--brand-2);color:#fff;border:0;border-radius:4px;
padding:.5rem 1.1rem;cursor:pointer;text-decoration:none;display:inline-block}
.filter-note{margin:.75rem 0 0;color:var(--muted)}
.table-scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:700;font-size:1.3rem;color:var(--brand);padding-bottom:.75rem}
th,td{text-align:left;padding:.55rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
thead th{background:#eef2f6;font-size:.9rem;color:#24292f;border-bottom:2px solid #9aa6b2}
td.amount,th.amount{text-align:right;white-space:nowrap}
td.date{white-space:nowrap}
.status{display:inline-block;padding:.1rem .5rem;border-radius:999px;font-size:.85rem;font-weight:600;
background:var(--ok-bg);color:var(--ok);white-space:nowrap}
.status-PLANNED{background:#e7effa;color:#0b3d66}
.status-late{background:var(--warn-bg);color:var(--warn);white-space:normal}
.status-RETURNED,.status-RECALLED,.status-CANCELLED{background:var(--bad-bg);color:var(--bad)}
.behalf{display:block;font-size:.85rem;color:var(--muted)}
.hint{display:block;font-size:.85rem;font-weight:400;color:var(--muted)}
.empty{color:var(--muted);margin:.25rem 0 0}
nav.paging{display:flex;gap:1rem;align-items:center;margin-top:1rem;flex-wrap:wrap}
nav.paging ul{list-style:none;display:flex;gap:.75rem;margin:0;padding:0}
.visually-hidden{position:absolute!important;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);
white-space:nowrap}
footer.site{border-top:1px solid var(--line);color:var(--muted);font-size:.9rem;padding:1.25rem 0 2rem}
.alert{background:var(--bad-bg);color:var(--bad);border-left:4px solid var(--bad);padding:.75rem 1rem;margin:0 0 1rem}
textarea{width:100%;font:14px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;padding:.5rem;
border:1px solid #6b7280;border-radius:4px}
label.block{display:block;font-weight:600;margin-bottom:.35rem}
""".strip()


def e(value) -> str:
    """Escape any value for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def _document(title: str, body: str, header_right: str = "") -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="sv">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{e(title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n"
        '<a class="skip" href="#innehall">Hoppa till innehållet</a>\n'
        '<header class="site"><div class="wrap">'
        '<p class="agency">Utbetalningsmyndigheten</p>'
        f"{header_right}</div></header>\n"
        f'<main id="innehall"><div class="wrap">\n{body}\n</div></main>\n'
        '<footer class="site"><div class="wrap"><p>Transaktionskontot visar utbetalningar som anslutna '
        "utbetalare har registrerat. Har du frågor om en utbetalning: kontakta utbetalaren.</p>"
        "</div></footer>\n</body>\n</html>\n"
    )


def _month_label(month: str, long: bool = False) -> str:
    year, number = month.split("-")
    return f"{(MONTHS if long else MONTHS_SHORT)[int(number) - 1]} {year}"


def _kr_axis(ore: int) -> str:
    """Axis labels in whole kronor: 500000 -> '5 000 kr'."""
    return f"{ore // 100:,}".replace(",", "\u00a0") + "\u00a0kr"


def _nice_max(ore: int) -> int:
    """A round axis maximum >= ore (in öre), at least 100 kr."""
    value = max(ore, 100_00)
    step = 1
    while step * 10 <= value:
        step *= 10
    for mult in (1, 2, 2.5, 5, 10):
        if step * mult >= value:
            return int(step * mult)
    return value


def _chart(monthly: list[dict]) -> str:
    width, height = 720, 260
    left, right, top, bottom = 78, 12, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max((m["paid_ore"] for m in monthly), default=0))
    n = max(1, len(monthly))
    slot = plot_w / n
    bar_w = slot * 0.62
    first, last = (monthly[0]["month"], monthly[-1]["month"]) if monthly else ("", "")
    total = sum(m["paid_ore"] for m in monthly)
    desc = "; ".join(f"{_month_label(m['month'], long=True)}: {m['paid_sek']}" for m in monthly)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="diagram-titel diagram-beskrivning" focusable="false">',
        f'<title id="diagram-titel">Utbetalt per månad, {e(_month_label(first, True))} till '
        f'{e(_month_label(last, True))}</title>' if monthly else '<title id="diagram-titel">Utbetalt per månad</title>',
        f'<desc id="diagram-beskrivning">Stapeldiagram. Totalt {e(format_sek(total))}. {e(desc)}.</desc>',
    ]
    for k in range(5):  # gridlines and axis labels
        value = peak * k // 4
        y = top + plot_h - plot_h * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{"#6b7280" if k == 0 else "#d0d7de"}" stroke-width="1"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
                     f'fill="#4a4a4a">{e(_kr_axis(value))}</text>')
    for i, m in enumerate(monthly):
        h = plot_h * m["paid_ore"] / peak if peak else 0
        x = left + slot * i + (slot - bar_w) / 2
        y = top + plot_h - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="#1f5f99">'
                     f'<title>{e(_month_label(m["month"], True))}: {e(m["paid_sek"])}</title></rect>')
        year, number = m["month"].split("-")
        cx = left + slot * i + slot / 2
        parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 17}" text-anchor="middle" font-size="12" '
                     f'fill="#1b1b1b">{MONTHS_SHORT[int(number) - 1]}</text>')
        if i == 0 or number == "01":
            parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 33}" text-anchor="middle" font-size="12" '
                         f'fill="#4a4a4a">{e(year)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _monthly_table(monthly: list[dict]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{e(_month_label(m["month"], True))}</th>'
        f'<td class="amount">{e(m["paid_sek"])}</td></tr>' for m in monthly)
    return ('<div class="table-scroll"><table class="monthly"><caption class="visually-hidden">Utbetalt per månad'
            '</caption><thead><tr><th scope="col">Månad</th><th scope="col" class="amount">Utbetalt</th></tr>'
            f"</thead><tbody>{rows}</tbody></table></div>")


def _masked_person(identity: str | None) -> str:
    """A representative sees whom a payment concerns without the full number: 19850101-****."""
    if not identity:
        return ""
    if len(identity) == 12:
        return f"{identity[:8]}-****"
    return f"{identity[:6]}-****"


def _status(item: dict) -> str:
    css = "status status-late" if item.get("late") else f"status status-{e(item['status'])}"
    return f'<span class="{css}">{e(item["status_text"])}</span>'


def _payments_table(table_id: str, caption: str, items: list[dict], date_header: str) -> str:
    head = (f'<thead><tr><th scope="col">{e(date_header)}</th><th scope="col">Utbetalare</th>'
            '<th scope="col">Typ av utbetalning</th><th scope="col">Period</th>'
            '<th scope="col" class="amount">Belopp</th><th scope="col">Status</th></tr></thead>')
    rows = []
    for it in items:
        behalf = (f'<span class="behalf">Som ombud för {e(_masked_person(it["on_behalf_of"]))}</span>'
                  if it.get("on_behalf_of") else "")
        rows.append(
            f'<tr data-entry="{e(it["entry_id"])}">'
            f'<td class="date">{e(it["payout_date"])}</td>'
            f'<th scope="row">{e(it["payer_name"])}{behalf}'
            f'<span class="hint">till konto {e(it["bank_account_hint"])}</span></th>'
            f'<td>{e(it["category_name"])}</td>'
            f'<td class="date">{e(it["period_start"])} – {e(it["period_end"])}</td>'
            f'<td class="amount">{e(it["amount_sek"])}</td>'
            f"<td>{_status(it)}</td></tr>")
    return (f'<div class="table-scroll"><table id="{e(table_id)}"><caption>{e(caption)}</caption>{head}'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _link(params: Mapping[str, str], **changes) -> str:
    query = {k: v for k, v in {**params, **changes}.items() if v not in (None, "")}
    return PAGE_PATH + ("?" + urlencode(query) if query else "")


def render_page(response: dict, person_label: str, link_params: Mapping[str, str] | None = None) -> str:
    """The "Mina utbetalningar" page for one person.

    ``person_label`` is shown as who is logged in (a name or a masked number; escaped).
    ``link_params`` are kept in the filter form and the paging links (e.g. a ``token``
    when the worker authenticates the page by query parameter instead of a cookie).
    """
    link_params = dict(link_params or {})
    totals = response["totals"]
    flt = response.get("filter") or {}
    paging = response["paging"]
    filter_params = {"from": flt.get("from"), "to": flt.get("to")}
    filtered = bool(flt.get("from") or flt.get("to"))

    body = [
        "<h1>Mina utbetalningar</h1>",
        '<p class="lead">Här ser du dina utbetalningar från statliga myndigheter, kommuner, regioner och '
        "arbetslöshetskassor: det som har betalats ut och det som är planerat.</p>",
        '<section class="card" aria-labelledby="sammanfattning-rubrik">'
        '<h2 id="sammanfattning-rubrik">Sammanfattning</h2><dl class="totals">'
        f'<div><dt>Utbetalt totalt</dt><dd id="total-utbetalt">{e(totals["paid_sek"])}</dd></div>'
        f'<div><dt>Kommande utbetalningar</dt><dd id="total-kommande">{e(totals["upcoming_sek"])}</dd></div>'
        "</dl></section>",
    ]
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in link_params.items())
    body.append(
        '<section class="card" aria-labelledby="filter-rubrik"><h2 id="filter-rubrik">Välj period</h2>'
        f'<form class="filter" method="get" action="{PAGE_PATH}" role="search" aria-label="Filtrera på utbetalningsdag">'
        f"{hidden}"
        f'<div><label for="from">Från och med</label><input type="date" id="from" name="from" '
        f'value="{e(flt.get("from"))}"></div>'
        f'<div><label for="to">Till och med</label><input type="date" id="to" name="to" '
        f'value="{e(flt.get("to"))}"></div>'
        '<div><button type="submit">Visa</button></div>'
        + (f'<div><a href="{e(_link(link_params))}">Visa alla datum</a></div>' if filtered else "")
        + "</form>"
        + (f'<p class="filter-note" id="filter-text">Visar utbetalningar med utbetalningsdag '
           f'{e(flt.get("from") or "från början")} till {e(flt.get("to") or "och framåt")}. '
           "Summorna ovan gäller alla dina utbetalningar.</p>" if filtered else "")
        + "</section>")

    upcoming = response["upcoming"]
    late_note = ('<p class="empty">En planerad utbetalning vars utbetalningsdag har passerat visas här tills '
                 "utbetalaren har bekräftat att den är utbetald.</p>" if any(i.get("late") for i in upcoming) else "")
    body.append('<section class="card" aria-labelledby="kommande-rubrik">'
                '<h2 id="kommande-rubrik" class="visually-hidden">Kommande utbetalningar</h2>'
                + (_payments_table("kommande", "Kommande utbetalningar", upcoming, "Utbetalningsdag") + late_note
                   if upcoming else '<p class="empty" id="kommande-tom"><strong>Kommande utbetalningar:</strong> '
                   "du har inga planerade utbetalningar.</p>")
                + "</section>")

    history = response["history"]
    nav = ""
    if paging["total_pages"] > 1:
        links = []
        if paging["page"] > 1:
            links.append(f'<li><a rel="prev" href="{e(_link({**link_params, **filter_params}, page=paging["page"] - 1))}">'
                         "Föregående sida</a></li>")
        if paging["page"] < paging["total_pages"]:
            links.append(f'<li><a rel="next" href="{e(_link({**link_params, **filter_params}, page=paging["page"] + 1))}">'
                         "Nästa sida</a></li>")
        nav = (f'<nav class="paging" aria-label="Sidor i historiken"><span id="sida">Sida {paging["page"]} av '
               f'{paging["total_pages"]} ({paging["total_items"]} utbetalningar)</span><ul>{"".join(links)}</ul></nav>')
    body.append('<section class="card" aria-labelledby="historik-rubrik">'
                '<h2 id="historik-rubrik" class="visually-hidden">Historik</h2>'
                + (_payments_table("historik", "Historik: genomförda utbetalningar", history, "Utbetalningsdag")
                   if history else '<p class="empty" id="historik-tom"><strong>Historik:</strong> '
                   "inga genomförda utbetalningar att visa.</p>")
                + nav + "</section>")

    cancelled = response.get("cancelled") or []
    if cancelled:
        body.append('<section class="card" aria-labelledby="makulerade-rubrik">'
                    '<h2 id="makulerade-rubrik" class="visually-hidden">Makulerade utbetalningar</h2>'
                    + _payments_table("makulerade", "Makulerade utbetalningar (blev aldrig utbetalda)", cancelled,
                                      "Planerad utbetalningsdag")
                    + "</section>")

    body.append(
        '<section class="card" aria-labelledby="diagram-rubrik">'
        '<h2 id="diagram-rubrik">Utbetalt de senaste 12 månaderna</h2>'
        f'<figure>{_chart(response["monthly"])}'
        "<figcaption>Staplarna visar vad som har betalats ut per månad (utbetalningsdag). Återbetalda och "
        "återkallade utbetalningar räknas inte.</figcaption></figure>"
        f"<details><summary>Visa diagrammet som tabell</summary>{_monthly_table(response['monthly'])}</details>"
        "</section>")

    who = f'<p class="who">Inloggad som <strong id="person">{e(person_label)}</strong></p>'
    return _document("Mina utbetalningar", "\n".join(body), who)


def render_login_page(action: str = PAGE_PATH, error: str | None = None, method: str = "get") -> str:
    """A page with a form to paste a bearer token; it submits ``token`` to ``action``."""
    if method.lower() not in ("get", "post"):
        raise ValueError("method must be get or post")
    alert = f'<div class="alert" role="alert" id="fel">{e(error)}</div>' if error else ""
    body = (
        "<h1>Logga in</h1>"
        '<p class="lead">Klistra in din inloggningstoken för att se dina utbetalningar. '
        "Token är personlig: dela den inte med någon.</p>"
        f'<section class="card" aria-labelledby="logga-in-rubrik"><h2 id="logga-in-rubrik">Inloggningstoken</h2>'
        f"{alert}"
        f'<form method="{e(method.lower())}" action="{e(action)}">'
        '<label class="block" for="token">Token</label>'
        '<textarea id="token" name="token" rows="5" required autocomplete="off" spellcheck="false"></textarea>'
        '<p><button type="submit">Visa mina utbetalningar</button></p></form></section>'
    )
    return _document("Logga in – Mina utbetalningar", body)


ERROR_TITLES = {
    400: "Felaktig förfrågan",
    401: "Du behöver logga in",
    403: "Du har inte behörighet",
    404: "Sidan finns inte",
}


def render_error_page(status: int, message: str, login_path: str = PAGE_PATH) -> str:
    """A browser page for an error answer; ``message`` is shown escaped."""
    title = ERROR_TITLES.get(status, "Något gick fel")
    again = (f'<p><a class="button" href="{e(login_path)}">Logga in igen</a></p>' if status in (401, 403) else "")
    body = (f"<h1>{e(title)}</h1>"
            f'<section class="card"><div class="alert" role="alert" id="fel">{e(message)}</div>{again}</section>')
    return _document(f"{title} – Mina utbetalningar", body)


__all__ = ["render_page", "render_login_page", "render_error_page", "PAGE_PATH"]
