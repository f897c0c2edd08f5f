"""Shared fixtures: a real embedded broker per test module (the embedded broker keeps
everything in memory and slows down as it fills, so it is not shared across the whole
session); each test gets its own topic prefix and Faust application id on it, so tests
never see each other's data."""
from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.client import PayerClient
from streams.observe import decode_topic, group_lag, wait_until
from streams.payers import Payer, write_payers
from streams.process import WorkerProcess
from streams.settings import Settings
from streams.topics import Catalogue, ensure_topics

_ids = itertools.count(1)

STOCKHOLM = Payer("2120000142", "Stockholms kommun", "MUNICIPALITY", "0180", "PROPOSAL_1")
GOTEBORG = Payer("2120001355", "Göteborgs kommun", "MUNICIPALITY", "1480", "PROPOSAL_1")
FK = Payer("2021005521", "Försäkringskassan", "STATE_AGENCY", "01", "PROPOSAL_1")
UPPSALA_P2 = Payer("2120003005", "Uppsala kommun", "MUNICIPALITY", "0380", "PROPOSAL_2")
MALMO_P3 = Payer("2120001124", "Malmö kommun", "MUNICIPALITY", "1280", "PROPOSAL_3")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_file=log) as b:
        yield b


@dataclass
class Pipeline:
    """A tkonto deployment under test: its settings, topics and worker processes."""
    broker: EmbeddedBroker
    settings: Settings
    payers: list[Payer]
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def catalogue(self) -> Catalogue:
        return Catalogue(self.settings)

    def start_worker(self, wait: bool = True) -> WorkerProcess:
        n = len(self.workers) + 1
        worker = WorkerProcess(self.settings.with_overrides(data_dir=str(self.workdir / f"data-{n}")),
                               log_file=self.workdir / f"worker-{n}.log").start()
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def client(self, payer: Payer) -> PayerClient:
        return PayerClient(payer.payer_id, self.broker.bootstrap, self.settings)

    def input_topics(self) -> list[str]:
        return [self.catalogue.payer_input(p.payer_id).name for p in self.payers]

    def drained(self) -> bool:
        topics = self.catalogue.pipeline_inputs(p.payer_id for p in self.payers)
        return group_lag(self.broker.bootstrap, self.settings.pipeline_group, topics) == 0

    def wait_drained(self, timeout: float = 240.0) -> None:
        assert wait_until(self.drained, timeout, interval=0.3), (
            f"worker did not process everything within {timeout}s; logs in {self.workdir}")

    def ledger(self) -> list[dict]:
        return decode_topic(self.broker.bootstrap, self.catalogue.ledger.name)

    def dead_letters(self) -> list[dict]:
        return decode_topic(self.broker.bootstrap, self.catalogue.deadletter.name)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def pipeline_factory(broker, tmp_path):
    made: list[Pipeline] = []

    def make(payers: list[Payer], **overrides) -> Pipeline:
        n = next(_ids)
        payers_file = tmp_path / f"payers-{n}.csv"
        write_payers(payers_file, payers)
        settings = Settings.from_env().with_overrides(
            bootstrap_servers=broker.bootstrap, topic_prefix=f"t{n}", app_id=f"tkonto-t{n}",
            payers_file=str(payers_file), session_timeout=2.0,
            jwt_secret="test-secret-not-for-production-0123456789", **overrides)
        pipeline = Pipeline(broker, settings, payers, tmp_path)
        ensure_topics(broker.bootstrap, pipeline.catalogue.all(p.payer_id for p in payers), settings)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.stop()


def payment(payer: Payer, payee: str, payment_id: str, event_type: str, amount_ore: int,
            category: str = "SOCIAL_ASSISTANCE", payout: dt.date = dt.date(2026, 11, 25), **extra) -> dict:
    """A valid PaymentEvent for tests; the event id is derived so a resend is an exact redelivery."""
    first = payout.replace(day=1)
    return {
        "event_id": f"{payer.payer_id}-{payment_id}-{event_type}", "payer_id": payer.payer_id,
        "payment_id": payment_id, "event_type": event_type, "payee_id": payee, "representative_id": None,
        "bank_account": "8327-9123456789", "amount_ore": amount_ore, "currency": "SEK", "category": category,
        "period_start": first, "period_end": (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1),
        "payout_date": payout, "decision": None,
        "event_time": dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.timezone.utc), **extra,
    }
