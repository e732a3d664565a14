"""An OTLP/HTTP trace receiver on the loopback, for tests: what a collector would get.

Rule: nothing here fakes the exporter. Workers run the real OpenTelemetry SDK and its
OTLP/HTTP exporter, pointed here with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; this server
decodes each POST /v1/traces body (an ExportTraceServiceRequest, protobuf, maybe
gzipped) with opentelemetry-proto and keeps the spans, flattened into `ReceivedSpan`s.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = ["OtlpReceiver", "ReceivedSpan"]


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: int  # opentelemetry.proto Span.SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    links: tuple[tuple[str, str], ...]
    resource: dict[str, Any] = field(default_factory=dict)
    trace_state: str = ""


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class OtlpReceiver:
    """`with OtlpReceiver() as receiver:`; `receiver.traces_endpoint` for the exporter."""

    def __init__(self, *, keep: bool = True) -> None:
        """`keep=False`: accept and count, decode nothing (a sink for benchmarks)."""
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.requests = 0
        self.bytes = 0
        self.keep = keep
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding", "") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                if receiver.keep:
                    receiver._add(ExportTraceServiceRequest.FromString(body))
                else:
                    with receiver._lock:
                        receiver.requests += 1
                        receiver.bytes += len(body)
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def traces_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

    def _add(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for rs in request.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        ReceivedSpan(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=s.kind,
                            attributes=_attrs(s.attributes),
                            status_code=s.status.code,
                            links=tuple((ln.trace_id.hex(), ln.span_id.hex()) for ln in s.links),
                            resource=resource,
                            trace_state=s.trace_state,
                        )
                    )
        with self._lock:
            self._spans.extend(spans)
            self.requests += 1

    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
