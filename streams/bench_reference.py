"""Rows 1 and 2 of ``tkonto bench``: the references the pipeline is measured against.

1. The broker's raw limit: one process, plain confluent-kafka consume -> ``default_codec``
   decode -> encode -> produce, with librdkafka's default batching (1a) and with one record
   per produce batch (1b). Saturated: over the very records pre-published for row 3.
   Offered: on a fresh broker of its own, at the bench's rate, latency = the payer's
   ``event_time`` -> the record re-produced by the loop.
2. A naive single Faust hop: stock ``kafka://`` transport, JSON values, one table update
   and one send per event, memory store, on its own broker. Offered: after its backlog,
   the same worker gets the bench's rate; latency = ``event_time`` -> processed in the hop.

Both run as subprocesses (``python -m streams.bench raw-loop|naive-worker``) and measure
their own CPU with ``getrusage`` from their first record on.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from .bench import (Deployment, Progress, Row, cpu_seconds, latency_summary, pace, publish)
from .broker import EmbeddedBroker, spawn_child, stop_child
from .codec import default_codec
from .settings import Settings
from .topics import TopicSpec, ensure_topics


# -- row 1: the raw broker limit -----------------------------------------------------------
def raw_loop(bootstrap: str, topics: list[str], out_topic: str, expect: int, single: bool,
             fetch_wait_ms: int = 50, timeout: float = 600.0) -> dict:
    """Consume every record of ``topics`` (assign from offset 0), decode, re-encode, produce.
    Prints ``ready`` once assigned; returns counts, CPU and the latency of each event
    (now - its ``event_time``, when re-produced). The consumer waits at most
    ``fetch_wait_ms`` per fetch, as the pipeline's does (librdkafka's default, 500 ms, put
    p50 at ~400 ms at 2,000 events/s on the embedded broker)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from .codec import CodecError

    codec = default_codec()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{os.getpid()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": fetch_wait_ms})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "enable.idempotence": False,
                         "queue.buffering.max.messages": 500_000, **({"batch.num.messages": 1} if single else {})})
    tps = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        tps += [TopicPartition(topic, p, 0) for p in meta.partitions]
    consumer.assign(tps)
    print("ready", flush=True)
    n = 0
    started = r0 = None
    latency: list[float] = []
    utc = dt.timezone.utc
    deadline = time.monotonic() + timeout
    while n < expect and time.monotonic() < deadline:
        # at most 50 ms per batch, as the engine (consume() waits for the whole batch or the timeout)
        for msg in consumer.consume(1000, 0.05):
            if msg.error():
                continue
            if started is None:
                started, r0 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
            n += 1
            try:
                event = codec.decode(msg.value(), expect="PaymentEvent")
            except CodecError:
                continue
            value = codec.encode("PaymentEvent", event)
            while True:
                try:
                    producer.produce(out_topic, value=value, key=event["payee_id"].encode())
                    break
                except BufferError:
                    producer.poll(0.01)
            latency.append((dt.datetime.now(utc) - event["event_time"]).total_seconds())
            producer.poll(0)
    producer.flush(120)
    elapsed = time.monotonic() - (started or time.monotonic())
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    consumer.close()
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) if r0 else 0.0
    return {"events": n, "seconds": elapsed, "cpu_seconds": cpu, "peak_rss_mb": r1.ru_maxrss / 1024,
            "latency": latency_summary(latency)}


def _raw_name(single: bool) -> str:
    return f"1{'b' if single else 'a'}. raw confluent-kafka loop, {'single-record batches' if single else 'default batching'}"


def _start_raw(dep: Deployment, expect: int, single: bool) -> subprocess.Popen:
    out = f"{dep.settings.topic_prefix}.raw.{'single' if single else 'default'}"
    ensure_topics(dep.bootstrap, [TopicSpec(out, "payee_id", "PaymentEvent", "bench output")], dep.settings)
    # spawn_child, like the bench's other helpers: the loop dies with the bench if it is interrupted
    proc = spawn_child([sys.executable, "-m", "streams.bench", "raw-loop", dep.bootstrap,
                        ",".join(dep.input_topics()), out, str(expect), "1" if single else "0",
                        str(dep.settings.fetch_max_wait_ms)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = proc.stdout.readline().strip()
    if ready != "ready":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"raw loop did not start: {ready} {proc.stderr.read()[-2000:]}")
    return proc


def _raw_result(proc: subprocess.Popen) -> dict:
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError("raw loop did not finish within 900 s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"raw loop failed: {stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def _raw_row(result: dict, single: bool, mode: str, broker_cpu: float, note: str) -> Row:
    n = result["events"]
    return Row(_raw_name(single), mode, n, round(result["seconds"], 2),
               round(n / result["seconds"], 1) if result["seconds"] else 0,
               round(result["cpu_seconds"] / n * 1000, 3), round(broker_cpu / n * 1000, 3),
               round(result["peak_rss_mb"], 1), result["latency"] if mode != "saturated" else {},
               "event_time -> re-produced by the loop" if mode != "saturated" else "", note=note)


def run_raw(dep: Deployment, expect: int, single: bool, progress: Progress) -> Row:
    """Saturated: the records already published on ``dep`` (row 3's backlog)."""
    progress(f"raw loop ({'single-record' if single else 'default'} batches) over {expect} records", force=True)
    b0 = dep.broker_cpu()
    proc = _start_raw(dep, expect, single)
    return _raw_row(_raw_result(proc), single, "saturated", dep.broker_cpu() - b0,
                    "consume -> decode -> encode -> produce, one process; broker CPU includes process start")


def run_raw_offered(workdir: Path, sim, offered, rate: float, settings: Settings, quick: bool, single: bool) -> Row:
    """Offered: the loop reads a fresh broker's payer topics while the bench publishes at ``rate``."""
    name = f"raw-{'single' if single else 'default'}-offered"
    progress = Progress(name)
    dep = Deployment(name, workdir, sim, settings, quick)
    try:
        proc = _start_raw(dep, len(offered), single)
        progress(f"raw loop ({'single-record' if single else 'default'} batches), offered {len(offered)} events at "
                 f"{rate:.0f}/s", force=True)
        b0 = dep.broker_cpu()
        publish(dep.clients, offered, rate, progress)
        return _raw_row(_raw_result(proc), single, f"offered {rate:.0f}/s", dep.broker_cpu() - b0,
                        "first record -> last re-produced; broker CPU includes the publishers' requests")
    finally:
        dep.close()


# -- row 2: a naive Faust hop --------------------------------------------------------------
def naive_worker(bootstrap: str, topic_in: str, topic_out: str, app_id: str, expect: int, result_path: str,
                 partitions: int, offered: int = 0) -> None:
    """A minimal Faust app: JSON values, one table update and one forward per event. Writes
    ``result_path`` after ``expect`` events, then ``<result_path>.offered`` after
    ``offered`` more (counted afresh: CPU and latency of those only)."""
    import faust

    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
                    datadir=str(Path(result_path).parent / f"{app_id}-data"),  # not the caller's working directory
                    topic_partitions=partitions, consumer_auto_offset_reset="earliest", autodiscover=False,
                    broker_commit_interval=1.0, value_serializer="json", key_serializer="raw",
                    # the group settings tkonto uses (Faust's defaults wait ~30 s before the first assignment)
                    broker_session_timeout=4.0, broker_heartbeat_interval=0.8, broker_rebalance_timeout=4.0)
    source = app.topic(topic_in, key_type=bytes, value_serializer="json")
    sink = app.topic(topic_out, key_type=bytes, value_serializer="json")
    totals = app.Table("totals", default=int, partitions=partitions, key_type=bytes, value_type=int)
    phases = [(expect, Path(result_path))] + ([(offered, Path(f"{result_path}.offered"))] if offered else [])
    state = {"n": 0, "t0": None, "r0": None, "lat": []}

    @app.agent(source)
    async def hop(stream):
        async for key, value in stream.items():
            if state["t0"] is None:
                state["t0"], state["r0"] = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
            totals[key] += value["amount_ore"]  # key: the payee id
            await sink.send(key=key, value=value)
            state["n"] += 1
            state["lat"].append(time.time() - value["event_time"])
            if phases and state["n"] == phases[0][0]:
                count, path = phases.pop(0)
                elapsed = time.monotonic() - state["t0"]
                r1, r0 = resource.getrusage(resource.RUSAGE_SELF), state["r0"]
                path.write_text(json.dumps({
                    "events": count, "seconds": elapsed,
                    "cpu_seconds": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
                    "peak_rss_mb": r1.ru_maxrss / 1024, "latency": latency_summary(state["lat"])}))
                state.update(n=0, t0=None, r0=None, lat=[])

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float, progress: Progress) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"naive worker exited ({proc.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"naive worker did not finish; see {log}")
        progress("naive worker draining ...")
        time.sleep(0.2)
    time.sleep(0.1)  # written whole: the file appears once its text is there
    return json.loads(path.read_text())


def _naive_row(r: dict, mode: str, broker_cpu: float, latency_kind: str, note: str) -> Row:
    n = r["events"]
    return Row("2. naive Faust hop (JSON, 1 table update + 1 send per event)", mode, n,
               round(r["seconds"], 2), round(n / r["seconds"], 1), round(r["cpu_seconds"] / n * 1000, 3),
               round(broker_cpu / n * 1000, 3), round(r["peak_rss_mb"], 1), r["latency"], latency_kind, note=note)


def run_naive(workdir: Path, emissions, offered, rate: float, settings: Settings, quick: bool,
              progress: Progress) -> list[Row]:
    """The saturated row over ``emissions``, then (if any) the same worker at ``rate``/s over ``offered``."""
    from confluent_kafka import Producer

    wd = workdir / "naive"
    wd.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_file=wd / "broker.log") as broker:
        topic_in, topic_out = "naive.in", "naive.out"
        ensure_topics(broker.bootstrap, [TopicSpec(t, "payee_id", "json", "bench") for t in (topic_in, topic_out)],
                      settings)
        # one record per batch, as when this row was first measured (the embedded broker's former
        # high-watermark workaround): row 2 stays comparable with earlier runs
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "batch.num.messages": 1,
                             "queue.buffering.max.messages": 500_000})

        def send(events: list[dict], paced: float | None) -> None:
            start = time.monotonic()
            for i, event in enumerate(events, 1):
                value = json.dumps(dict(event, event_time=time.time()), default=str).encode()
                while True:
                    try:
                        producer.produce(topic_in, key=event["payee_id"].encode(), value=value)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
                if paced:
                    pace(i, paced, start)
                progress(f"published {i}/{len(events)}")
            producer.flush(120)

        events = [em.event for em in emissions if em.event is not None]
        later = [em.event for em in offered if em.event is not None]
        progress(f"publishing {len(events)} JSON events", force=True)
        send(events, None)
        result_path, log = wd / "result.json", wd / "worker.log"
        b0 = cpu_seconds(broker.proc.pid)
        proc = spawn_child([sys.executable, "-m", "streams.bench", "naive-worker", broker.bootstrap, topic_in, topic_out,
                            f"naive-{os.getpid()}", str(len(events)), str(result_path), str(settings.partitions),
                            str(len(later))], stdout=log.open("ab"), stderr=subprocess.STDOUT)
        rows = []
        try:
            r = _wait_for(result_path, proc, log, 120 if quick else 1800, progress)
            rows.append(_naive_row(r, "saturated", cpu_seconds(broker.proc.pid) - b0,
                                   "event_time -> processed in the hop (pre-published backlog: mostly queueing)",
                                   "stock kafka:// transport (aiokafka), memory store; broker CPU includes worker "
                                   "start-up"))
            if later:
                progress(f"offered load: {len(later)} JSON events at {rate:.0f}/s", force=True)
                b1 = cpu_seconds(broker.proc.pid)
                send(later, rate)
                r = _wait_for(Path(f"{result_path}.offered"), proc, log, 120 if quick else 600, progress)
                rows.append(_naive_row(r, f"offered {rate:.0f}/s", cpu_seconds(broker.proc.pid) - b1,
                                       "event_time -> processed in the hop",
                                       "first offered event -> last processed; publisher: one record per batch"))
        finally:
            stop_child(proc)
    return rows
