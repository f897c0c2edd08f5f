"""The pipeline on the worker: every stage on one engine, run beside Faust.

Stages, in the order a payment passes them (each is a plain function in its module):

1. ``ingest``: a payer's input topic -> validated, re-keyed by payee -> payments;
2. ``ledger``: payments -> the payee's account, the ledger, enrichment, fan-out by scope,
   and the payee rules on the analysis record -> analysis.by-account;
3. ``account-analysis``: analysis.by-account -> the account rule -> signals;
4. ``citizen``: citizen -> the viewer's citizen view (the API's data);
5. ``open-cases`` and ``case-commands``: signals -> review cases; analysts' decisions ->
   decided cases, notifications and audit records (``cases``).

The engine runs on its own thread (``EngineService``) once the reference registers are
read; Faust runs the HTTP server and the timers on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import threading

import mode

from . import analysis, avro_native, cases, citizen, compiled_modules, ingest, ledger
from .app import app, catalogue, codec, payers, settings
from .engine import Engine, tune_collector
from .owners import announcement, owners, workers_topic
from .reference import registers
from .threads import name_os_thread
from .topics import ensure_topics

log = logging.getLogger(__name__)

GROUP = settings.pipeline_group


def build_engine() -> Engine:
    return Engine(
        bootstrap=settings.bootstrap_servers, group=GROUP,
        stages=[ingest.stage, ledger.stage, analysis.stage, citizen.stage, *cases.stages],
        stores=ledger.stores + analysis.stores + citizen.stores + cases.stores,
        consumer_config={"session.timeout.ms": int(settings.session_timeout * 1000),
                         "heartbeat.interval.ms": max(200, int(settings.session_timeout * 200)),
                         "fetch.wait.max.ms": settings.fetch_max_wait_ms,
                         "client.id": settings.canonical_url},
        producer_config={"linger.ms": settings.linger_ms, **settings.producer_tuning()},
        batch_size=settings.pipeline_batch,
        max_backlog=settings.pipeline_max_backlog,
        on_assigned=announce,
    )


def announce(engine: Engine, assigned: dict[str, set[int]]) -> None:
    """Tell every worker which citizen partitions this one now owns (``owners``)."""
    record = announcement(settings.canonical_url, citizen.citizen_topic, assigned.get(citizen.citizen_topic, ()))
    engine.out.write(workers_topic, settings.canonical_url.encode(), codec.encode(
        "se.tkonto.state.WorkerAssignment", record))
    engine.out.flush()


@app.service
class EngineService(mode.Service):
    """Starts the engine thread when the registers are loaded; stops it with the worker."""

    engine: Engine | None = None
    _thread: threading.Thread | None = None

    async def on_start(self) -> None:
        global service
        service = self
        specs = catalogue.all(payers)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, ensure_topics, settings.bootstrap_servers, specs, settings)
        await loop.run_in_executor(None, cases.adopt_faust_offsets)  # before the engine joins its group
        owners.start()
        if codec.native:
            log.info("Avro codec: the C writer and reader (streams/avro_native.py)")
        else:
            log.warning("Avro codec: the Python writers and readers alone (~30 µs more CPU a payment event): %s",
                        avro_native.why_not or "TKONTO_NATIVE_CODEC=false")
        modules = compiled_modules()
        compiled = sorted(name for name, how in modules.items() if how == "compiled")
        if modules and len(compiled) == len(modules):
            log.info("compiled modules (Cython): all %d of the per-event path", len(compiled))
        else:
            log.warning("compiled modules (Cython): %d of %d; %s", len(compiled), len(modules),
                        "; ".join(f"{name}: {how}" for name, how in sorted(modules.items()) if how != "compiled")
                        or "none built (no Cython or no C compiler at install): the Python source runs")
        self.engine = build_engine()
        self.add_future(self._run())

    async def _run(self) -> None:
        await registers.wait_loaded()  # enrichment after a (re)start must see the registers
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._main, args=(loop,), name="tkonto-pipeline", daemon=True)
        self._thread.start()

    def _main(self, loop) -> None:
        name_os_thread()
        tune_collector()  # the registers and caches: millions of long-lived objects
        try:
            self.engine.run()
        except BaseException as exc:  # e.g. output not deliverable: never commit past it
            asyncio.run_coroutine_threadsafe(app.crash(exc), loop)

    async def on_stop(self) -> None:
        owners.stop()
        if self.engine is not None:
            self.engine.stop()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 60)


service: EngineService | None = None  # the running one, once started


def engine() -> Engine | None:
    return service.engine if service is not None else None
