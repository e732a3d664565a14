"""What one console process talks to: Kafka (a producing client and the live hub) and
Postgres (the read pool). Built from plain values; `turnlog ui` builds it from settings.

Rule: requests are produced only through `turnlog.Client` (the same door as the CLI and
the Python client); reads come from the projections; live events from the hub.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.topics import TopicNames, topic_names
from turnlog.client import Client
from turnlog.console.live import Hub
from turnlog.console.ops import Offsets
from turnlog.console.reads import Reads

__all__ = ["Backend"]


@dataclass(eq=False)
class Backend:
    bootstrap: str
    database_url: str
    topic_prefix: str = ""
    max_text_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        self.topics: TopicNames = topic_names(self.topic_prefix)
        self.client = Client(
            bootstrap_servers=self.bootstrap,
            topic_prefix=self.topic_prefix,
            database_url=self.database_url,
            client_id="turnlog-console",
            max_text_bytes=self.max_text_bytes,
        )
        self.hub = Hub(self.bootstrap, self.topics)
        self.reads = Reads(self.database_url)
        self.offsets = Offsets(self.bootstrap)
        # The consumer groups whose lag the operations page shows.
        self.worker_group = f"{self.topic_prefix}turnlog-session"
        # Requests produced through the API, by type (/metrics).
        self.produced: dict[str, int] = {}
        self.projector_consumer = "projector"

    async def start(self) -> None:
        await self.reads.open()
        await self.client.start()
        await self.offsets.start()
        await self.hub.start()

    async def stop(self) -> None:
        await self.hub.stop()
        await self.offsets.stop()
        await self.client.close()
        await self.reads.close()

    @property
    def partitions(self) -> int:
        return self.client.partitions
