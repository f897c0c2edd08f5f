"""Review cases on the worker: hits open cases, analysts decide, payers are notified.

Analysis selects, people decide: a case is opened (one per subject and rule window) from
selection hits, and only an analyst's decision (CLOSED_NO_ACTION, NOTIFY_PAYER,
IN_DEPTH_REVIEW) changes it. Nothing is reclaimed or stopped automatically.

Both run on the pipeline engine, as two stages over the ``cases`` store (keyed by case id,
partitioned like the signals topic):

* ``open-cases``: a rule hit from the signals topic opens or updates its case;
* ``case-commands``: an analyst's decision, a ``CaseCommand`` on the case-commands topic
  (keyed by case id, so read by the worker that holds the case), decides it, and the
  decision's notifications and audit record are written once the decided case is.

The store's changelog is the compacted cases topic itself: what the worker writes there is
every case's latest state, and a worker that takes over a partition restores its cases from
it (as it restores any store). The engine reads the signals, case-commands and citizen
topics with the range assignor, so partition *p* of each (same key, partitioner and count)
is one worker's: a case request is answered by the owner of the case id's partition
(``owners``), which publishes the command and waits for its engine to apply it. Every
decision and every export is written to the audit topic.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import uuid

from confluent_kafka import Consumer, TopicPartition
from faust.web import View

from . import metrics
from .app import app, catalogue, codec, emit, raw_topic, settings, state_store
from .auth import AuthConfigError, AuthError, verify
from .engine import Output, Stage, partition_of
from .identity import mask
from .ingest import failed
from .observe import partitions_of, read_topic
from .owners import owners
from .review import (DecisionResult, ReviewError, decide, decision_outputs, export_json, export_person,
                     is_redelivered, open_or_update_case)
from .web import for_key, json_error

log = logging.getLogger(__name__)

CASE_SCHEMA = "Case"
signals_topic = catalogue.signals.name
commands_topic = catalogue.case_commands.name
audit_topic = raw_topic(catalogue.audit.name)  # the HTTP views' records (Faust's producer)
commands_out = raw_topic(commands_topic)
#: the review cases by case id; changelogged to the compacted cases topic, which is both the
#: cases' public record and what a worker restores them from
cases_store = state_store("cases", CASE_SCHEMA, signals_topic, changelog=catalogue.cases.name)
#: command id -> (event loop, future) of a decision request waiting on this worker
_pending: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
_pending_lock = threading.Lock()


def open_case(msg, out: Output) -> None:
    """Stage: one selection hit -> its case, opened or updated. A redelivered hit (its id is
    in the case already) changes nothing."""
    hit = codec.decode(msg.value(), expect="SelectionHit")
    partition, key = msg.partition(), msg.key()
    before = cases_store.get(partition, key)
    if before is not None and hit["hit_id"] in before["hits"]:
        return
    after = open_or_update_case(before, hit, dt.datetime.now(dt.timezone.utc),
                                id_secret=settings.case_id_secret or None)
    cases_store.put(partition, key, after)
    metrics.RULE_HITS.labels(hit["rule_id"]).inc()
    if before is None:
        metrics.CASES.labels("OPEN").inc()


def apply_command(msg, out: Output) -> None:
    """Stage: one analyst's command -> the case decided, its notifications and audit record
    (written once the decided case is: ``Output.write``), and the waiting request answered
    once all of them are delivered (``Output.when_delivered``, at the engine's next commit)."""
    command = codec.decode(msg.value(), expect="CaseCommand")
    outcome = decide_case(out, msg.partition(), msg.key(), command)
    with _pending_lock:
        waiter = _pending.pop(command["command_id"], None)
    if waiter is not None:
        loop, future = waiter
        out.when_delivered(lambda: _answer_from_engine(loop, future, outcome))


def _answer_from_engine(loop: asyncio.AbstractEventLoop, future: asyncio.Future, outcome) -> None:
    try:
        loop.call_soon_threadsafe(_answer, future, outcome)
    except RuntimeError:  # the event loop is closed: the worker is stopping, nobody waits
        pass


def _answer(future: asyncio.Future, outcome) -> None:
    if not future.done():  # else the request gave up waiting (503)
        future.set_result(outcome)


def decide_case(out: Output, partition: int, key: bytes, command: dict):
    """Apply one DECIDE command to the case at ``key``: the decided case, or the
    ``ReviewError`` that refused it (404 no such case, 409 decided before, 400 bad request)."""
    case = cases_store.get(partition, key)
    if case is None:
        return ReviewError(404, f"no case {command['case_id']}")
    if is_redelivered(case, command):
        # The command was applied before a crash, its offset not committed: what the decision
        # sent may not have left the worker. Sent again, same ids and bytes.
        _send_decision(out, decision_outputs(case))
        return case
    try:
        result = decide(case, command["outcome"], command["analyst"], command["reason"], command["requested_at"],
                        command_id=command["command_id"])
    except ReviewError as exc:
        return exc  # e.g. 409: the case was decided by another request first
    cases_store.put(partition, key, result.case)
    metrics.CASES.labels(result.case["status"]).inc()
    for notification in result.notifications:
        metrics.NOTIFICATIONS.labels(notification["payer_id"]).inc()
    _send_decision(out, result)
    return result.case


def _send_decision(out: Output, result: DecisionResult) -> None:
    key = result.case["case_id"].encode()
    for notification in result.notifications:
        out.write(catalogue.payer_notifications(notification["payer_id"]).name, key,
                  codec.encode("Notification", notification))
    for record in result.audit:
        out.write(catalogue.audit.name, key, codec.encode("AuditRecord", record))


open_cases_stage = Stage("open-cases", [signals_topic], open_case, failed("cases"))
commands_stage = Stage("case-commands", [commands_topic], apply_command, failed("cases"))
stages = [open_cases_stage, commands_stage]
stores = [cases_store]


def adopt_offsets(bootstrap: str, old_group: str, new_group: str, topics: list[str]) -> int:
    """Upgrading from a version whose review cases were Faust agents (their group: the app
    id): where ``new_group`` (the engine's) has no committed offset on a partition of
    ``topics`` and ``old_group`` has one, the engine's group starts there, so that the
    commands applied before are not applied again, which would re-send their notifications
    (the same ids) to the payers. Run before the engine joins its group; the old workers
    must be stopped. Returns how many partitions were adopted."""
    new = Consumer({"bootstrap.servers": bootstrap, "group.id": new_group, "enable.auto.commit": False})
    old = Consumer({"bootstrap.servers": bootstrap, "group.id": old_group, "enable.auto.commit": False})
    try:
        tps = partitions_of(new, topics)
        if not tps:
            return 0
        theirs = {(tp.topic, tp.partition): tp.offset for tp in old.committed(tps, timeout=10)}
        adopt = [TopicPartition(tp.topic, tp.partition, theirs[(tp.topic, tp.partition)])
                 for tp in new.committed(tps, timeout=10)
                 if tp.offset < 0 and theirs.get((tp.topic, tp.partition), -1) >= 0]
        if adopt:
            new.commit(offsets=adopt, asynchronous=False)
        return len(adopt)
    finally:
        new.close()
        old.close()


def adopt_faust_offsets() -> None:
    """``adopt_offsets`` for this worker's review topics, from Faust's group to the engine's;
    a failure is logged (the engine then reads them from the beginning: idempotent, but an
    applied command re-sends its decision's records)."""
    try:
        adopted = adopt_offsets(settings.bootstrap_servers, settings.app_id, settings.pipeline_group,
                                [signals_topic, commands_topic])
    except Exception as exc:
        log.warning("could not take over the review topics' offsets from Faust's group %s: %s", settings.app_id, exc)
        return
    if adopted:
        log.info("review cases: the engine's group starts where Faust's group %s left off on %d partitions (upgrade)",
                 settings.app_id, adopted)


def local_case(case_id: str) -> dict | None:
    """The case if this worker holds its partition (None: no such case here)."""
    key = case_id.encode()
    return cases_store.peek(partition_of(key, settings.partitions), key)


def holds_case(case_id: str) -> bool:
    """Whether this worker holds the case's partition, restored (``web.for_key``)."""
    return cases_store.serves(partition_of(case_id.encode(), settings.partitions))


def case_owner(case_id: str) -> tuple[str, int] | None:
    """The worker holding the case's partition: the owner of that partition of the citizen
    topic, co-partitioned with the signals and case-commands topics (module docstring)."""
    return owners.address(catalogue.citizen.name, case_id.encode())


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
        case = local_case(case_id)
        if case is None:
            return _error(web, ReviewError(404, f"no case {case_id}"), "case")
        metrics.API_REQUESTS.labels("case", "200").inc()
        return _json(web, case)
    return await for_key(web, request, case_owner(case_id), local, "case", held=lambda: holds_case(case_id))


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
            if local_case(case_id) is None:
                return _error(web, ReviewError(404, f"no case {case_id}"), "decision")
            command = {"command_id": str(uuid.uuid4()), "case_id": case_id, "action": "DECIDE",
                       "outcome": str(body.get("outcome", "")), "reason": str(body.get("reason", "")),
                       "analyst": analyst, "requested_at": dt.datetime.now(dt.timezone.utc)}
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            with _pending_lock:
                _pending[command["command_id"]] = (loop, waiter)
            emit(commands_out, case_id.encode(), codec.encode("CaseCommand", command))
            try:
                outcome = await asyncio.wait_for(waiter, timeout=15.0)
            except asyncio.TimeoutError:
                with _pending_lock:
                    _pending.pop(command["command_id"], None)
                return _error(web, ReviewError(503, "the decision was not applied in time; check the case and "
                                                    "try again"), "decision")
            if isinstance(outcome, ReviewError):
                return _error(web, outcome, "decision")
            metrics.API_REQUESTS.labels("decision", "200").inc()
            log.info("case %s decided %s by %s", case_id, outcome["status"], mask(analyst))
            return _json(web, outcome)
        return await for_key(web, request, case_owner(case_id), local, "decision", held=lambda: holds_case(case_id))


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
