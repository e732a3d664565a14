"""How `turnlog dev kafka-cli` maps a tool name and its arguments to a Java command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from turnlog.dev import _tools
from turnlog.dev._errors import DevInfraError

DEV = Path(__file__).resolve().parents[2] / "turnlog" / "dev"


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("kafka-consumer-groups", ["--list"], ["--bootstrap-server", "b:1", "--list"]),
        ("kafka-topics.sh", ["--list"], ["--bootstrap-server", "b:1", "--list"]),
        ("topics", ["--list"], ["--bootstrap-server", "b:1", "--list"]),
        # argparse4j: the top-level option goes before the subcommand ...
        (
            "kafka-metadata-quorum",
            ["describe", "--status"],
            ["--bootstrap-server", "b:1", "describe", "--status"],
        ),
        # ... except where it is the subcommand's own option.
        ("kafka-cluster", ["cluster-id"], ["cluster-id", "--bootstrap-server", "b:1"]),
        # A server given (or help asked for) is left alone.
        (
            "kafka-topics",
            ["--bootstrap-server", "x:9", "--list"],
            ["--bootstrap-server", "x:9", "--list"],
        ),
        (
            "kafka-topics",
            ["--bootstrap-server=x:9", "--list"],
            ["--bootstrap-server=x:9", "--list"],
        ),
        (
            "kafka-metadata-quorum",
            ["--bootstrap-controller", "c:9", "describe"],
            ["--bootstrap-controller", "c:9", "describe"],
        ),
        ("kafka-console-consumer", ["--help"], ["--help"]),
    ],
)
def test_bootstrap_server_is_added_where_the_tool_reads_it(
    name: str, args: list[str], expected: list[str]
) -> None:
    _main, argv = _tools.command_line(name, args, "b:1")
    assert argv == expected


def test_names_map_to_the_classes_of_kafkas_scripts() -> None:
    main, _ = _tools.command_line("kafka-consumer-groups", [], "b:1")
    assert main == "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
    assert _tools.tool_named("console-consumer").main_class.endswith("consumer.ConsoleConsumer")


def test_an_unknown_tool_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(
        DevInfraError, match="'kafka-nope' is not one of Kafka's tools.*kafka-topics"
    ):
        _tools.command_line("kafka-nope", [], "b:1")


def test_tools_pom_pins_the_brokers_kafka_version() -> None:
    def version(pom: str) -> str:
        match = re.search(r"<kafka\.version>([^<]+)<", (DEV / pom).read_text())
        assert match is not None, pom
        return match.group(1)

    assert version("kafka-tools-pom.xml") == version("kafka-pom.xml")
