"""The worker process: the pipeline engine and the Faust app (HTTP, timers), plus /metrics."""
from __future__ import annotations


import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import cases, citizen, pipeline, reference  # noqa: F401  (importing registers stages and pages)
from . import metrics
from .app import app, settings


@app.page("/metrics")
async def metrics_view(web, request):
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/ready")
async def ready_view(web, request):
    """200 once the reference registers are read, this worker's pipeline has partitions
    assigned (state restored) and it is not rebalancing."""
    engine = pipeline.engine()
    assigned = engine.partitions() if engine else 0
    loaded = reference.registers.caught_up.is_set()
    ok = assigned > 0 and not engine.rebalancing and loaded
    return web.json({"ready": ok, "assigned_partitions": assigned, "registers_loaded": loaded},
                    status=200 if ok else 503)


@app.timer(interval=5.0)
async def measure_lag():
    """Consumer lag per topic of this worker's pipeline (measured on the engine's thread)."""
    engine = pipeline.engine()
    lag: dict[str, int] = dict(engine.lag_by_topic) if engine else {}
    metrics.CONSUMER_LAG.clear()  # topics this worker no longer owns after a rebalance drop out
    for topic, value in lag.items():
        metrics.CONSUMER_LAG.labels(topic).set(value)


def run() -> None:
    """Run the worker in this process until SIGTERM/SIGINT."""
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
