"""Which worker owns which citizen-view partition, so any worker can route a request.

The pipeline's consumer group gives no place for a worker's URL (librdkafka has no custom
assignor metadata, and the embedded broker's DescribeGroups lists no members), so each
worker announces its partitions on the compacted ``workers`` topic after every rebalance
(``WorkerAssignment``, keyed by worker URL), and every worker follows that topic. The
newest claim of a partition wins: a killed worker's stale claim is superseded by the
survivor's announcement after the takeover.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading

from .app import catalogue, codec, settings
from .engine import partition_of
from .reference import follow
from .threads import name_os_thread
from .web import ident

log = logging.getLogger(__name__)

SCHEMA = "se.tkonto.state.WorkerAssignment"
workers_topic = catalogue.workers.name


def announcement(url: str, topic: str, partitions, now: dt.datetime | None = None) -> dict:
    return {"worker_url": url, "topic": topic, "partitions": sorted(partitions),
            "announced_at": now or dt.datetime.now(dt.timezone.utc)}


def owner_of(claims: dict[str, dict], topic: str, partition: int) -> str | None:
    """The URL with the newest claim on ``topic``/``partition``, or None."""
    best = None
    for claim in claims.values():
        if claim["topic"] == topic and partition in claim["partitions"]:
            if best is None or claim["announced_at"] > best["announced_at"]:
                best = claim
    return best["worker_url"] if best else None


class Owners:
    """The latest announcement of every worker, followed by a background consumer."""

    def __init__(self):
        self.claims: dict[str, dict] = {}
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="tkonto-owners", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        name_os_thread()
        try:
            follow(f"{settings.app_id}-owners", [workers_topic], self.apply, self._stop, fetch_wait_ms=100)
        except Exception:
            log.exception("worker announcements reader stopped; requests are answered locally")

    def apply(self, msg) -> None:
        if msg.key() is None:
            return
        if msg.value() is None:
            self.claims.pop(msg.key().decode(), None)
            return
        try:
            claim = codec.decode(msg.value(), expect=SCHEMA)
        except Exception as exc:
            log.warning("ignoring undecodable worker announcement: %s", exc)
            return
        self.claims = {**self.claims, claim["worker_url"]: claim}

    def address(self, topic: str, key: bytes) -> tuple[str, int] | None:
        """(host, port) of the worker with the newest claim on ``key``'s partition of
        ``topic`` (``web.for_key``), or None while none is known."""
        url = owner_of(self.claims, topic, partition_of(key, settings.partitions))
        return ident(url) if url else None


owners = Owners()
