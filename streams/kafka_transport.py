"""Faust transport ``tkonto://``: librdkafka (confluent-kafka) produces Faust's records.

The worker's Faust app only produces (it starts no consumer, ``streams.app``): the records
of the HTTP views, analysts' case commands and the export audit records. They go through
librdkafka, several times faster than aiokafka's pure-Python producer, and whose record
batches the embedded Tansu broker indexes correctly (with aiokafka-written batches Tansu
reports a high watermark of "last batch's base offset + 1").

Partitioning is Java-compatible murmur2 (``engine.PARTITIONER``), so a command lands in the
partition ``engine.partition_of`` names for its case id: the worker that holds the case.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Optional

import confluent_kafka
from aiokafka.structs import RecordMetadata, TopicPartition
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import HeadersArg

from .engine import PARTITIONER
from .threads import name_os_thread


def bootstrap_of(urls) -> str:
    """Faust's broker URLs as a librdkafka bootstrap list."""
    return ",".join(f"{url.host}:{url.port or 9092}" for url in urls)


def _resolve(fut: asyncio.Future, err, msg) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(confluent_kafka.KafkaException(err))
    else:
        ts_type, ts = msg.timestamp()
        fut.set_result(RecordMetadata(
            msg.topic(), msg.partition(), TopicPartition(msg.topic(), msg.partition()), msg.offset(),
            ts, ts_type, None))


class Producer(aiokafka_driver.Producer):
    """Faust producer whose records are written by librdkafka."""

    _rd: Optional[confluent_kafka.Producer] = None
    _direct_errors: list
    _poller: Optional[threading.Thread] = None
    _stopping: Optional[threading.Event] = None

    def _rd_config(self) -> dict[str, Any]:
        from .settings import Settings

        return {**Settings.from_env().producer_tuning(),
            "bootstrap.servers": bootstrap_of(self.app.conf.broker_producer),
            "client.id": f"{self.app.conf.id}-producer",
            "linger.ms": 5,
            "acks": "all",
            "partitioner": PARTITIONER,
            "queue.buffering.max.messages": 500_000,
            "enable.idempotence": False,
        }

    async def on_start(self) -> None:
        await super().on_start()  # Faust's aiokafka driver starts its client; records go through librdkafka
        self._rd = confluent_kafka.Producer(self._rd_config())
        self._direct_errors = []
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="tkonto-producer-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        name_os_thread()
        while not self._stopping.is_set():
            self._rd.poll(0.05)

    async def on_stop(self) -> None:
        if self._rd is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._rd.flush, 30)
            self._stopping.set()
            self._poller.join(5)
            self._rd = None
        await super().on_stop()

    async def send(self, topic: str, key: Optional[bytes], value: Optional[bytes], partition: Optional[int],
                   timestamp: Optional[float], headers: Optional[HeadersArg], *,
                   transactional_id: Optional[str] = None) -> Awaitable[RecordMetadata]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        kwargs: dict[str, Any] = {"on_delivery": lambda err, msg: loop.call_soon_threadsafe(_resolve, fut, err, msg)}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp:
            kwargs["timestamp"] = int(timestamp * 1000.0)
        if headers:
            kwargs["headers"] = list(headers.items()) if hasattr(headers, "items") else list(headers)
        while True:
            try:
                self._rd.produce(topic, value=value, key=key, **kwargs)
                return fut
            except BufferError:  # local queue full: let the poller drain it
                await asyncio.sleep(0.005)

    def produce_direct(self, topic: str, key: Optional[bytes], value: bytes, headers=None) -> None:
        """Write one record straight through librdkafka: no Faust future, no event-loop
        wake-up per record. A view that must know the record is written awaits ``flush``,
        which raises if any direct record failed (the export, before it answers); a
        decision is answered once the engine has read and applied its command."""
        while True:
            try:
                self._rd.produce(topic, value=value, key=key, headers=headers, on_delivery=self._on_direct_delivery)
                return
            except BufferError:  # local queue full: back-pressure on the agent
                self._rd.poll(0.01)

    def _on_direct_delivery(self, err, msg) -> None:  # runs on the poll thread
        if err is not None:
            self._direct_errors.append(f"{msg.topic()}: {err}")

    async def flush(self) -> None:
        await self.buffer.flush()
        if self._rd is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._rd.flush, 60)
            if self._direct_errors:
                errors, self._direct_errors = self._direct_errors, []
                raise confluent_kafka.KafkaException(f"{len(errors)} record(s) not delivered, e.g. {errors[0]}")


class Transport(aiokafka_driver.Transport):
    Producer = Producer


TRANSPORTS.aliases["tkonto"] = "streams.kafka_transport:Transport"
