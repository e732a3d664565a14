"""Work items from a Kafka topic, for `turnlog batch consume`.

Rule: an item is named by where it is, `p<partition>o<offset>`, so any run of the
consumer — the first, a re-run, a restart after SIGKILL — gives the same record the same
name (and so the same session and request id: streams.batch). The topic is read from
its beginning with no consumer group: what is done is known from the events log, not
from committed offsets. A record's text is its value as UTF-8, or its "text" when it is
a JSON object with one; empty records are no items.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

__all__ = ["TopicFeed", "item_text", "topic_items"]


def item_text(topic: str, rec: ConsumerRecord) -> str | None:
    """The item's text, None for an empty record; ValueError naming the record's place
    when it is not UTF-8 text."""
    where = f"p{rec.partition}o{rec.offset}"
    try:
        text = (rec.value or b"").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{topic} {where}: the item is not UTF-8 text: {exc}") from exc
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("text"), str):
            text = value["text"]
    return text if text.strip() else None


class TopicFeed:
    """The items of one topic: `start()` reads every partition up to its end now (the
    items there, by place); `poll()` then gives the items produced since, as they come.
    `on_refused(message)` hears of a record that is no item while following (it stays
    on its topic; reading goes on); while starting, such a record is an error."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        client_id: str = "turnlog-batch-items",
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.on_refused = on_refused
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        self._started = False

    async def start(self) -> dict[str, str]:
        c = self._consumer
        await c.start()
        self._started = True
        parts = c.partitions_for_topic(self.topic)
        if parts is None:
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(self.topic)
        if not parts:
            raise ValueError(f"Topic {self.topic!r} does not exist (or has no partitions).")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        items: dict[str, str] = {}
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            batch = await c.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for rec in records:
                    text = item_text(self.topic, rec)
                    if text is not None:
                        items[f"p{rec.partition}o{rec.offset}"] = text
        return items

    async def poll(self, timeout_ms: int = 0) -> dict[str, str]:
        items: dict[str, str] = {}
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        for records in batch.values():
            for rec in records:
                try:
                    text = item_text(self.topic, rec)
                except ValueError as exc:
                    if self.on_refused is not None:
                        self.on_refused(str(exc))
                    continue
                if text is not None:
                    items[f"p{rec.partition}o{rec.offset}"] = text
        return items

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._consumer.stop()


async def topic_items(bootstrap: str, topic: str) -> dict[str, str]:
    """The work items on `topic` up to its end now: key `p<partition>o<offset>` -> text.
    Records that are not text are refused naming their place."""
    feed = TopicFeed(bootstrap, topic, client_id="turnlog-batch-probe")
    try:
        return await feed.start()
    finally:
        await feed.stop()
