"""Review cases on the worker: hits open cases, analysts decide, payers are notified.

Analysis selects, people decide: a case is opened (one per subject and rule window) from
selection hits, and only an analyst's decision (CLOSED_NO_ACTION, NOTIFY_PAYER,
IN_DEPTH_REVIEW) changes it. Nothing is reclaimed or stopped automatically.

Table writes happen only in stream context, so a decision is a ``CaseCommand`` on the
case-commands topic (keyed, like the table, by case id). The HTTP request is answered on
the worker that owns the case (``web.for_key``), which publishes the command and waits for
its own agent to apply it. Every decision and every export is written to the audit topic.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid

from faust.web import View

from . import metrics
from .app import app, catalogue, codec, emit, raw_topic, settings
from .auth import AuthConfigError, AuthError, verify
from .engine import partition_of
from .identity import mask
from .observe import read_topic
from .review import (DecisionResult, ReviewError, decide, decision_outputs, export_json, export_person,
                     is_redelivered, open_or_update_case)
from .web import for_key, json_error, table_owner

log = logging.getLogger(__name__)

CASE_SCHEMA = "Case"
signals_topic = raw_topic(catalogue.signals.name)
commands_topic = raw_topic(catalogue.case_commands.name)
cases_topic = raw_topic(catalogue.cases.name)
audit_topic = raw_topic(catalogue.audit.name)
cases_table = app.Table("cases", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                        help="Review cases keyed by case id (Avro Case).")
_pending: dict[str, asyncio.Future] = {}  # command id -> result, for requests answered on this worker


def load_case(raw: bytes | None) -> dict | None:
    return codec.decode(raw, expect=CASE_SCHEMA) if raw else None


def store_case(key: bytes, case: dict) -> None:
    encoded = codec.encode(CASE_SCHEMA, case)
    cases_table[key] = encoded
    emit(cases_topic, key, encoded)


@app.agent(signals_topic)
async def open_cases(stream):
    async for batch in stream.take_events(settings.batch_size, settings.batch_within):
        now = dt.datetime.now(dt.timezone.utc)
        for event in batch:
            stream._set_current_event(event)
            hit = codec.decode(event.message.value, expect="SelectionHit")
            stored = cases_table.get(event.message.key)
            before = load_case(stored)
            if before is not None and hit["hit_id"] in before["hits"]:
                # A redelivered hit: the case already has it. Its record is written again:
                # after a crash the table's changelog can hold the case while the cases
                # topic record, sent by the same producer, was lost (same bytes: compacted).
                emit(cases_topic, event.message.key, stored)
                continue
            after = open_or_update_case(before, hit, now, id_secret=settings.case_id_secret or None)
            store_case(event.message.key, after)
            metrics.RULE_HITS.labels(hit["rule_id"]).inc()
            if before is None:
                metrics.CASES.labels("OPEN").inc()


@app.agent(commands_topic)
async def apply_commands(stream):
    async for batch in stream.take_events(settings.batch_size, settings.batch_within):
        for event in batch:
            stream._set_current_event(event)
            command = codec.decode(event.message.value, expect="CaseCommand")
            outcome = _apply(event.message.key, command)
            waiter = _pending.pop(command["command_id"], None)
            if waiter is not None and not waiter.done():
                waiter.set_result(outcome)


def _apply(key: bytes, command: dict):
    case = load_case(cases_table.get(key))
    if case is None:
        return ReviewError(404, f"no case {command['case_id']}")
    if is_redelivered(case, command):
        # The command was applied before a crash, its offset not committed: the case and
        # what the decision sent may not have left the worker. Sent again, same ids and bytes.
        _send_decision(key, decision_outputs(case))
        return case
    try:
        result = decide(case, command["outcome"], command["analyst"], command["reason"], command["requested_at"],
                        command_id=command["command_id"])
    except ReviewError as exc:
        return exc  # e.g. 409: the case was decided by another request first
    metrics.CASES.labels(result.case["status"]).inc()
    for notification in result.notifications:
        metrics.NOTIFICATIONS.labels(notification["payer_id"]).inc()
    _send_decision(key, result)
    return result.case


def _send_decision(key: bytes, result: DecisionResult) -> None:
    store_case(key, result.case)
    for notification in result.notifications:
        emit(raw_topic(catalogue.payer_notifications(notification["payer_id"]).name), key,
             codec.encode("Notification", notification))
    for record in result.audit:
        emit(audit_topic, key, codec.encode("AuditRecord", record))


# -- HTTP, analysts only ------------------------------------------------------------------------
def _json(web, body, status: int = 200):
    return web.bytes(body if isinstance(body, bytes) else export_json(body).encode(),
                     content_type="application/json", status=status)


def _analyst(request) -> str:
    return verify(settings.jwt_secret, request.headers.get("Authorization"), "analyst").subject


def _error(web, exc: Exception, endpoint: str):
    return json_error(web, endpoint, exc)


def latest_cases() -> dict[str, dict]:
    """Every case's latest state, from the compacted cases topic (all partitions)."""
    cases: dict[str, dict] = {}
    for msg in read_topic(settings.bootstrap_servers, catalogue.cases.name):
        cases[msg.key().decode()] = codec.decode(msg.value(), expect=CASE_SCHEMA)
    return cases


@app.page("/api/v1/cases")
async def list_cases(web, request):
    try:
        _analyst(request)
    except (AuthError, AuthConfigError) as exc:
        return _error(web, exc, "cases")
    status = request.query.get("status")
    cases = await asyncio.get_running_loop().run_in_executor(None, latest_cases)
    items = sorted((c for c in cases.values() if status is None or c["status"] == status),
                   key=lambda c: (c["opened_at"], c["case_id"]))
    metrics.API_REQUESTS.labels("cases", "200").inc()
    return _json(web, {"cases": items, "count": len(items)})


@app.page("/api/v1/cases/{case_id}")
async def show_case(web, request, case_id):
    try:
        _analyst(request)
    except (AuthError, AuthConfigError) as exc:
        return _error(web, exc, "case")

    async def local():
        case = load_case(cases_table.get(case_id.encode()))
        if case is None:
            return _error(web, ReviewError(404, f"no case {case_id}"), "case")
        metrics.API_REQUESTS.labels("case", "200").inc()
        return _json(web, case)
    return await for_key(web, request, table_owner(cases_table, case_id.encode()), local)


@app.page("/api/v1/cases/{case_id}/decision")
class CaseDecision(View):
    """POST {"outcome": CLOSED_NO_ACTION | NOTIFY_PAYER | IN_DEPTH_REVIEW, "reason": "..."}."""

    async def post(self, request, case_id):
        web = self.web
        try:
            analyst = _analyst(request)
        except (AuthError, AuthConfigError) as exc:
            return _error(web, exc, "decision")

        async def local():
            try:
                body = await request.json()
            except ValueError:
                return _error(web, ReviewError(400, 'the body must be JSON: {"outcome": ..., "reason": ...}'),
                              "decision")
            if cases_table.get(case_id.encode()) is None:
                return _error(web, ReviewError(404, f"no case {case_id}"), "decision")
            command = {"command_id": str(uuid.uuid4()), "case_id": case_id, "action": "DECIDE",
                       "outcome": str(body.get("outcome", "")), "reason": str(body.get("reason", "")),
                       "analyst": analyst, "requested_at": dt.datetime.now(dt.timezone.utc)}
            waiter = _pending[command["command_id"]] = asyncio.get_running_loop().create_future()
            emit(commands_topic, case_id.encode(), codec.encode("CaseCommand", command))
            try:
                outcome = await asyncio.wait_for(waiter, timeout=15.0)
            except asyncio.TimeoutError:
                _pending.pop(command["command_id"], None)
                return _error(web, ReviewError(503, "the decision was not applied in time; check the case and "
                                                    "try again"), "decision")
            if isinstance(outcome, ReviewError):
                return _error(web, outcome, "decision")
            metrics.API_REQUESTS.labels("decision", "200").inc()
            log.info("case %s decided %s by %s", case_id, outcome["status"], mask(analyst))
            return _json(web, outcome)
        return await for_key(web, request, table_owner(cases_table, case_id.encode()), local)


def person_records(person_id: str) -> tuple[list[dict], list[dict]]:
    """Everything registered about a person: the ledger entries and enriched payments in the
    person's partition of the ledger and enriched topics (both keyed by payee)."""
    key = person_id.encode()
    partition = partition_of(key, settings.partitions)
    found = []
    for topic in (catalogue.ledger.name, catalogue.enriched.name):
        found.append([codec.decode(m.value()) for m in read_topic(settings.bootstrap_servers, topic,
                                                                   partitions=[partition]) if m.key() == key])
    return found[0], found[1]


@app.page("/api/v1/persons/{person_id}/export")
async def export_view(web, request, person_id):
    """In-depth review of a named person: ?case_id=...&reason=... (case decided IN_DEPTH_REVIEW).
    Patient-secrecy data is never exported; every export is audited."""
    try:
        analyst = _analyst(request)
        case_id, reason = request.query.get("case_id", ""), request.query.get("reason", "")
        loop = asyncio.get_running_loop()
        case = (await loop.run_in_executor(None, latest_cases)).get(case_id)
        if case_id and case is None:
            raise ReviewError(404, f"no case {case_id}")
        ledger_entries, enriched = await loop.run_in_executor(None, person_records, person_id)
        export, audit = export_person(person_id, ledger_entries, enriched, case_id, analyst, reason,
                                      dt.datetime.now(dt.timezone.utc), case=case)
    except (AuthError, AuthConfigError, ReviewError) as exc:
        return _error(web, exc, "export")
    emit(audit_topic, case_id.encode(), codec.encode("AuditRecord", audit))
    await app.producer.flush()  # the audit record is written before anything leaves
    metrics.REVIEW_EXPORTS.inc()
    metrics.API_REQUESTS.labels("export", "200").inc()
    log.info("in-depth review export for case %s by %s", case_id, mask(analyst))
    return _json(web, export_json(export).encode())
