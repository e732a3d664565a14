"""The front door's choice of wire format: settings -> schemas.codec.

    install(settings)   TURNLOG_SCHEMA_REGISTRY_URL set: registry-framed records become
                        readable; TURNLOG_WIRE_FORMAT=registry: they are also written

The subjects are the topic-name strategy's (`<topic>-value`, with TURNLOG_TOPIC_PREFIX):
the Request envelope is the value of the requests topic and of its dead-letter topic.
Nothing is asked of the registry here: the codec registers a schema the first time a
record of its envelope is written, and looks an id up the first time it reads it.
"""

from __future__ import annotations

import sys

from streams.topics import TopicNames, topic_names
from turnlog.settings import Settings

__all__ = ["envelope_topics", "install"]


def envelope_topics(names: TopicNames) -> dict[str, tuple[str, ...]]:
    """Envelope -> the topics whose record values it is."""
    return {
        "Request": (names.requests, names.dlq),
        "Event": (names.events,),
        "TokenDelta": (names.deltas,),
        "Snapshot": (names.snapshots,),
        "AgentVersion": (names.agents,),
        "ScheduleRecord": (names.schedules, names.schedule_history),
        "AuditCheckpoint": (names.checkpoints,),
    }


def install(settings: Settings) -> None:
    """Make the codec read (and, in registry mode, write) what the settings say."""
    if settings.schema_registry_url is None:
        # The codec's default; imported (and its schemas prepared) only where it is used.
        if "schemas.codec" in sys.modules:
            sys.modules["schemas.codec"].use_single_object()
        return
    from schemas import codec
    from schemas.registry import ConfluentRegistry

    seam = ConfluentRegistry(
        settings.schema_registry_url, envelope_topics(topic_names(settings.topic_prefix))
    )
    codec.use_registry(seam, write=settings.wire_format == "registry")
