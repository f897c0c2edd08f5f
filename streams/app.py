"""The Faust application: one per worker process, configured from the settings object.

It runs the worker's HTTP server (API, page, /metrics, /ready), its timers and the
producer of the HTTP views' records (analysts' commands, export audit records). Every
record the worker reads goes through the pipeline engine beside it (``streams.pipeline``),
the review cases included (``streams.cases``), so Faust starts no consumer: no group, no
fetches, no agents. Modules register their pages on ``app`` by being imported
(``streams.worker``).
"""
from __future__ import annotations

import faust
from faust.app.base import BootStrategy

from . import kafka_transport  # noqa: F401  (registers the tkonto:// transport)
from .codec import default_codec
from .payers import Payer, load_payers
from .settings import Settings
from .state import Entries, Store
from .topics import Catalogue

settings = Settings.from_env()
catalogue = Catalogue(settings)
codec = default_codec()

app = faust.App(
    settings.app_id,
    broker=[f"tkonto://{b}" for b in (settings.bootstrap_servers or "127.0.0.1:9092").split(",")],
    store=settings.store,
    datadir=settings.data_dir,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_bind=settings.web_host,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication,
    broker_session_timeout=settings.session_timeout,
    broker_heartbeat_interval=max(0.2, settings.session_timeout / 5),
    broker_rebalance_timeout=max(2.0, settings.session_timeout),
    broker_commit_interval=1.0,
    consumer_auto_offset_reset="earliest",
    producer_linger_ms=5,
    autodiscover=False,
    web_enabled=True,
    canonical_url=settings.canonical_url,
    key_serializer="raw",
    value_serializer="raw",
    table_cleanup_interval=3600.0,
)
#: web server, producer, timers and services; no Kafka consumer (nothing here reads a topic)
app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)


def _load_payers() -> dict[str, Payer]:
    if not settings.payers_file:
        return {}
    return {p.payer_id: p for p in load_payers(settings.payers_file)}


#: payer id -> Payer, seeded from TKONTO_PAYERS_FILE.
payers: dict[str, Payer] = _load_payers()


def state_store(name: str, schema: str, source_topic: str, entries: Entries | None = None,
                changelog: str | None = None) -> Store:
    """A pipeline state store partitioned like ``source_topic``, changelogged to
    ``<app id>-<name>-changelog`` (or to ``changelog``, a compacted topic of the catalogue
    keyed and partitioned like the store), with the configured backend and cache
    (``entries``: changelogged per entry of the values' map, see ``state.Entries``)."""
    return Store(name, schema, source_topic, changelog or catalogue.changelog(name).name, codec, settings.store,
                 settings.data_dir, settings.state_cache, entries)


def emit(topic: faust.TopicT, key: bytes | None, value: bytes, headers: list | None = None) -> None:
    """Write a record of an HTTP view (see ``kafka_transport.Producer.produce_direct``)."""
    app.producer.produce_direct(topic.get_topic_name(), key, value, headers)


def raw_topic(*names: str, **kwargs) -> faust.TopicT:
    """Topic(s) of Avro single-object bytes: tkonto's codec does the (de)serialising."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", **kwargs)
