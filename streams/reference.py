"""Reference registers as streams: compacted topics, held in memory by every worker.

Each worker keeps the whole payer registry, bank account register and population
register, read from their compacted topics from the beginning and followed while it runs
(a change, e.g. a closed account or a registered death, applies to the next payment).
They are read with a plain consumer in assign mode, not Faust GlobalTables: on the
embedded broker a worker with GlobalTables never completed its group join (Faust's
assignor stalled), so the registers stay out of the consumer group entirely.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from confluent_kafka import Consumer, TopicPartition

from .app import app, catalogue, codec, payers, settings
from .observe import next_batch, partitions_of, reported_ends, true_end_offsets
from .payers import Payer
from .registers import SCHEMAS, payer_from_record
from .threads import name_os_thread

log = logging.getLogger(__name__)


class Registers:
    """kind -> key -> record, kept current by a background consumer thread."""

    def __init__(self):
        self.data: dict[str, dict[str, dict]] = {kind: {} for kind in SCHEMAS}
        self._topics = {spec.name: kind for kind, spec in catalogue.registers().items()}
        self._stop = threading.Event()
        self.caught_up = threading.Event()  # set once the registers are read to where they ended at start
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tkonto-registers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        name_os_thread()

        def loaded() -> None:
            self.caught_up.set()
            log.info("reference registers loaded: %s", {kind: len(entries) for kind, entries in self.data.items()})

        try:
            follow(f"{settings.app_id}-registers", list(self._topics),
                   lambda msg: self.apply(self._topics[msg.topic()], msg.key(), msg.value()), self._stop, loaded)
        except Exception:  # never take the worker down; lookups then miss and are counted
            log.exception("register reader stopped")

    def apply(self, kind: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:
            self.data[kind].pop(key.decode(), None)  # tombstone: entry removed from the register
            return
        try:
            self.data[kind][key.decode()] = codec.decode(value, expect=SCHEMAS[kind])
        except Exception as exc:
            log.warning("ignoring undecodable %s register record: %s", kind, exc)

    async def wait_loaded(self) -> None:
        """Until the registers are read to where they ended at start (enrichment needs them)."""
        while not self.caught_up.is_set():
            await asyncio.sleep(0.05)

    def get(self, kind: str, key: str) -> dict | None:
        return self.data[kind].get(key)


def follow(group: str, topics: list[str], apply: Callable, stop: threading.Event,
           caught_up: Callable[[], None] | None = None, fetch_wait_ms: int = 500) -> None:
    """Read ``topics`` from the beginning and keep following them until ``stop`` (a plain
    consumer in assign mode, outside any consumer group), handing every record to
    ``apply``; ``caught_up`` is called once everything that was there at the start is read.
    ``fetch_wait_ms``: how long an idle fetch waits, i.e. how late a new record can be seen."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": fetch_wait_ms})
    try:
        tps = [TopicPartition(tp.topic, tp.partition, 0) for tp in partitions_of(consumer, topics, 30)]
        remaining = {}
        if caught_up is not None:
            reported = reported_ends(consumer, tps, 30)
            remaining = {tp: end for tp, end in true_end_offsets(settings.bootstrap_servers, reported).items()
                         if end > 0}
            if not remaining:
                caught_up()
        consumer.assign(tps)
        while not stop.is_set():
            for msg in next_batch(consumer, 1000, 0.2):
                if msg.error():
                    continue
                apply(msg)
                tp = (msg.topic(), msg.partition())
                if tp in remaining and msg.offset() + 1 >= remaining[tp]:
                    del remaining[tp]
                    if not remaining:
                        caught_up()
    finally:
        consumer.close()


registers = Registers()


@app.task
async def start_registers() -> None:
    registers.start()


#: payer id -> (the registry record, the Payer made of it): a Payer is made again only when
#: a new record replaces the one it was made of (the stages ask ~2 times per payment)
_made: dict[str, tuple[dict, Payer]] = {}


def current_payer(payer_id: str) -> Payer | None:
    """The registry's latest entry for a payer (a scope change applies at once), else the seed file's."""
    record = registers.data["payers"].get(payer_id)
    if not record:
        return payers.get(payer_id)
    made = _made.get(payer_id)
    if made is None or made[0] is not record:
        made = _made[payer_id] = (record, payer_from_record(record))
    return made[1]
