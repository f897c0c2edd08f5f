"""Topics made directly on the test broker, for tests below the catalogue (``streams.topics``)."""
from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic


def create_topics(bootstrap: str, *specs: tuple[str, int, bool]) -> None:
    """Create each ``(name, partitions, compacted)`` topic and wait until it exists."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(name, partitions, 1, config={"cleanup.policy": "compact"} if compacted else {})
           for name, partitions, compacted in specs]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(30)
