"""The worker process: every stage's agents on one Faust app, plus /metrics."""
from __future__ import annotations

import asyncio

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import ingest, ledger  # noqa: F401  (importing registers the agents)
from . import metrics
from .app import app, settings


@app.page("/metrics")
async def metrics_view(web, request):
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.timer(interval=5.0)
async def measure_lag():
    """Consumer lag per topic: highwater minus the next offset this worker will read."""
    consumer = app.consumer
    lag: dict[str, int] = {}
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        position = await consumer.position(tp) if hasattr(consumer, "position") else None
        if high is None or position is None:
            continue
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - position)
    for topic, value in lag.items():
        metrics.CONSUMER_LAG.labels(topic).set(value)


def run() -> None:
    """Run the worker in this process until SIGTERM/SIGINT."""
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
