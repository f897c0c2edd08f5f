"""``tkonto case ...`` and ``tkonto review export ...``: the analyst's command line.

Talks to a worker's HTTP API (``--url``, default the local worker) with an analyst token:
``--token`` / ``TKONTO_ANALYST_TOKEN``, or one minted for ``--analyst NAME`` from
``TKONTO_JWT_SECRET`` (only where the secret is at hand, e.g. on the operator's host).
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

from .auth import issue_token
from .settings import Settings


class AnalystCliError(Exception):
    pass


def _token(args, settings: Settings) -> str:
    token = getattr(args, "token", None) or os.environ.get("TKONTO_ANALYST_TOKEN")
    if token:
        return token
    if not args.analyst:
        raise AnalystCliError("give --token (or TKONTO_ANALYST_TOKEN), or --analyst NAME with TKONTO_JWT_SECRET set")
    if not settings.jwt_secret:
        raise AnalystCliError("--analyst needs TKONTO_JWT_SECRET to sign a token; or pass --token")
    return issue_token(settings.jwt_secret, args.analyst, "analyst", 900)


def call(args, method: str, path: str, body: dict | None = None) -> dict:
    settings = Settings.from_env()
    url = (args.url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/") + path
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {_token(args, settings)}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise AnalystCliError(f"{exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise AnalystCliError(f"cannot reach a worker at {url}: {exc.reason}; is `tkonto worker` running (--url)?") from None


def case_list(args) -> str:
    query = f"?status={urllib.parse.quote(args.status)}" if args.status else ""
    cases = call(args, "GET", f"/api/v1/cases{query}")["cases"]
    lines = [f"{'case id':42} {'rule':30} {'status':17} {'hits':>4} {'payers':>6}  window"]
    for c in cases:
        lines.append(f"{c['case_id']:42} {c['rule_id']:30} {c['status']:17} {len(c['hits']):>4} "
                     f"{len(c['payer_ids']):>6}  {c['window']}")
    lines.append(f"{len(cases)} case(s)")
    return "\n".join(lines)


def case_show(args) -> str:
    return json.dumps(call(args, "GET", f"/api/v1/cases/{urllib.parse.quote(args.case_id)}"), indent=2,
                      ensure_ascii=False)


def case_decide(args) -> str:
    case = call(args, "POST", f"/api/v1/cases/{urllib.parse.quote(args.case_id)}/decision",
                {"outcome": args.outcome, "reason": args.reason})
    return f"case {case['case_id']} is now {case['status']} (decided by {case['decided_by']})"


def review_export(args) -> str:
    query = urllib.parse.urlencode({"case_id": args.case_id, "reason": args.reason})
    export = call(args, "GET", f"/api/v1/persons/{urllib.parse.quote(args.person_id)}/export?{query}")
    return json.dumps(export, indent=2, ensure_ascii=False)
