"""Apache Kafka's command-line tools, run from Maven jars: `turnlog dev kafka-cli`.

    turnlog dev kafka-cli kafka-consumer-groups --list
    turnlog dev kafka-cli kafka-console-consumer --topic turnlog.events --from-beginning
    turnlog dev kafka-cli kafka-topics --describe --topic turnlog.requests

The tools are the classes the `bin/kafka-*.sh` scripts of a Kafka distribution start;
their jars (org.apache.kafka:kafka-tools, pinned in kafka-tools-pom.xml to the broker's
version) are resolved by Maven into <state_dir>/kafka/tools, apart from the broker's
libs/ so that fetching them never changes a running broker's class path. A tool that
talks to a broker gets `--bootstrap-server` from KAFKA_BOOTSTRAP_SERVERS unless the
arguments name a server (or ask for --help/--version).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from turnlog.dev._errors import DevInfraError, MissingToolError
from turnlog.dev._kafka import java_executable, java_version, paths
from turnlog.settings import Settings

__all__ = ["TOOLS", "Tool", "command_line", "fetch_tools", "run_tool", "tools_ready"]

POM = Path(__file__).with_name("kafka-tools-pom.xml")

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by turnlog dev kafka-cli: the tools' own log, warnings only, on stderr. -->
<Configuration status="warn">
  <Appenders><Console name="err" target="SYSTEM_ERR">
    <PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers><Root level="warn"><AppenderRef ref="err"/></Root></Loggers>
</Configuration>
"""


@dataclass(frozen=True, slots=True)
class Tool:
    main_class: str
    # Where --bootstrap-server goes: "first" (before an argparse4j subcommand, harmless
    # for jopt-simple tools), "last" (a subcommand's own option), or None (no broker).
    bootstrap: str | None = "first"


_T = "org.apache.kafka.tools."
# bin/<name>.sh of the Kafka 4.x distribution -> its main class.
TOOLS: dict[str, Tool] = {
    "kafka-acls": Tool(_T + "AclCommand"),
    "kafka-broker-api-versions": Tool(_T + "BrokerApiVersionsCommand"),
    "kafka-client-metrics": Tool(_T + "ClientMetricsCommand"),
    "kafka-cluster": Tool(_T + "ClusterTool", bootstrap="last"),
    "kafka-configs": Tool(_T + "ConfigCommand"),
    "kafka-console-consumer": Tool(_T + "consumer.ConsoleConsumer"),
    "kafka-console-producer": Tool(_T + "ConsoleProducer"),
    "kafka-console-share-consumer": Tool(_T + "consumer.ConsoleShareConsumer"),
    "kafka-consumer-groups": Tool(_T + "consumer.group.ConsumerGroupCommand"),
    "kafka-delegation-tokens": Tool(_T + "DelegationTokenCommand"),
    "kafka-delete-records": Tool(_T + "DeleteRecordsCommand"),
    "kafka-features": Tool(_T + "FeatureCommand"),
    "kafka-get-offsets": Tool(_T + "GetOffsetShell"),
    "kafka-groups": Tool(_T + "GroupsCommand"),
    "kafka-leader-election": Tool(_T + "LeaderElectionCommand"),
    "kafka-log-dirs": Tool(_T + "LogDirsCommand"),
    "kafka-metadata-quorum": Tool(_T + "MetadataQuorumCommand"),
    "kafka-reassign-partitions": Tool(_T + "reassign.ReassignPartitionsCommand"),
    "kafka-share-groups": Tool(_T + "consumer.group.ShareGroupCommand"),
    "kafka-streams-groups": Tool(_T + "streams.StreamsGroupCommand"),
    "kafka-topics": Tool(_T + "TopicCommand"),
    "kafka-transactions": Tool(_T + "TransactionsCommand"),
}

_NAMES_A_SERVER = (
    "--bootstrap-server",
    "--bootstrap-controller",
    "--broker-list",
    "--help",
    "-h",
    "--version",
)


def tool_named(name: str) -> Tool:
    """`kafka-topics`, `kafka-topics.sh` and `topics` all name kafka-topics."""
    key = name.removesuffix(".sh")
    key = key if key.startswith("kafka-") else f"kafka-{key}"
    tool = TOOLS.get(key)
    if tool is None:
        raise DevInfraError(
            f"{name!r} is not one of Kafka's tools that `turnlog dev kafka-cli` runs: "
            f"{', '.join(sorted(TOOLS))}."
        )
    return tool


def command_line(name: str, args: list[str], bootstrap: str) -> tuple[str, list[str]]:
    """The tool's main class and its arguments, with --bootstrap-server added when the
    tool talks to a broker and the arguments name none."""
    tool = tool_named(name)
    given = any(a == flag or a.startswith(flag + "=") for a in args for flag in _NAMES_A_SERVER)
    if tool.bootstrap is None or given:
        return tool.main_class, list(args)
    server = ["--bootstrap-server", bootstrap]
    return tool.main_class, (
        server + list(args) if tool.bootstrap == "first" else list(args) + server
    )


def _tools_dir(settings: Settings) -> Path:
    return paths(settings).root / "tools"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def tools_ready(settings: Settings) -> bool:
    marker = _tools_dir(settings) / ".pom-sha256"
    return marker.exists() and marker.read_text().strip() == _pom_digest()


def fetch_tools(settings: Settings) -> Path:
    """Resolve the tools' jars with Maven into <state>/kafka/tools (no-op when current)."""
    target = _tools_dir(settings)
    if tools_ready(settings):
        return target
    mvn = shutil.which("mvn")
    if not mvn:
        raise MissingToolError(
            "Maven is needed once to download Kafka's tools and `mvn` is not on PATH. "
            "Install it (e.g. `apt-get install maven`)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / "tools.partial"
    shutil.rmtree(staging, ignore_errors=True)
    base = [mvn, "-B", "-q", "-ntp", "-f", str(POM)]
    if settings.dev_maven_repo is not None:
        base.append(f"-Dmaven.repo.local={settings.dev_maven_repo.resolve()}")
    goal = ["dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
    failure = ""
    for command in ([*base, "-o", *goal], base + goal):  # offline first
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            break
        failure = (result.stdout + result.stderr)[-4000:]
    else:
        raise DevInfraError(
            f"Maven could not resolve Kafka's tools (mvn -f {POM} "
            f"dependency:copy-dependencies):\n{failure}"
        )
    (staging / ".pom-sha256").write_text(_pom_digest())
    (staging / "log4j2.xml").write_text(_LOG4J2)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def run_tool(settings: Settings, name: str, args: list[str]) -> int:
    """Run one of Kafka's tools in the foreground (stdin/stdout/stderr are the caller's);
    returns its exit code."""
    main_class, argv = command_line(name, args, settings.kafka_bootstrap_servers)
    java = java_executable()
    java_version(java)
    tools = fetch_tools(settings)
    command = [
        java,
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile=file:{tools / 'log4j2.xml'}",
        "-cp",
        f"{tools}/*",
        main_class,
        *argv,
    ]
    return subprocess.run(command, check=False).returncode
