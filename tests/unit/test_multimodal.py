"""Images and documents in a user message: the core keeps them once in the log (inline,
or a sha256 reference), refers to them by digest in the LLM request (so replay rebuilds
the exact request), refuses them for a model that cannot see; each vendor's real SDK
sends them in its own shape to its fake server, which checks that shape."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agents.context import build_llm_request
from agents.errors import InvalidRecord
from agents.events import (
    Attachment,
    CompleteLlmCall,
    LlmCallRequested,
    ModelChanged,
    RequestRejected,
    SendMessage,
    SetModel,
    UserMessageReceived,
)
from agents.limits import Limits
from agents.llm import LlmRequest, MediaBlock, Message, TextBlock
from agents.providers import ProviderError, RetryPolicy
from agents.providers.anthropic import AnthropicProvider
from agents.providers.gemini import GeminiProvider
from agents.providers.openai_compat import OpenAICompatProvider
from agents.providers.routing import Route, RoutedProvider
from agents.registry import AgentRegistry
from agents.state_codec import state_from_dict, state_to_dict
from schemas import codec
from tests.fakes.anthropic_server import FAKE_API_KEY, FakeAnthropicServer, FakeMessage
from tests.fakes.gemini_server import FAKE_GEMINI_KEY, FakeGeminiServer, FakeGeneration
from tests.fakes.openai_server import FAKE_OPENAI_KEY, FakeCompletion, FakeOpenAIServer
from tests.unit.test_fsm_support import Driver, agent, make_registry

ASYNC = pytest.mark.asyncio(loop_scope="session")
ONCE = RetryPolicy(max_attempts=1)


def png_1x1() -> bytes:
    """A valid 1x1 PNG, built by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = png_1x1()
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def inline(data: bytes, media_type: str, name: str | None = None) -> Attachment:
    return Attachment(
        media_type, hashlib.sha256(data).hexdigest(), base64.b64encode(data).decode(), name
    )


IMAGE = inline(PNG, "image/png", "pixel.png")
DOC = inline(PDF, "application/pdf", "notes.pdf")


def seer(**overrides: Any) -> Any:
    fields: dict[str, Any] = {"model": "claude-sonnet-4-5", "tools": ["calculator"]}
    fields["delegates"] = []
    return agent("seer", **{**fields, **overrides})


def blind() -> Any:
    return agent("blind", model="claude-3-5-haiku", tools=["calculator"], delegates=[])


REGISTRY = make_registry(seer(), blind())


def started(registry: AgentRegistry = REGISTRY, *attachments: Attachment) -> Driver:
    d = Driver(registry)
    d.send(SendMessage("what is in these?", attachments=attachments or (IMAGE, DOC)), agent="seer")
    return d


# --------------------------------------------------------------------------- core


def test_attachments_are_in_the_log_once_and_the_request_names_them_by_digest() -> None:
    d = started()
    received = next(e for e in d.log if isinstance(e.payload, UserMessageReceived))
    assert received.payload.attachments == (IMAGE, DOC)
    requested = next(e for e in d.log if isinstance(e.payload, LlmCallRequested))
    request = build_llm_request(d.state, requested.payload, REGISTRY)
    first = request.messages[0]
    assert first.content == (
        MediaBlock("image/png", IMAGE.sha256, IMAGE.data),
        MediaBlock("application/pdf", DOC.sha256, DOC.data),
        TextBlock("what is in these?"),
    )
    assert request.digest() == requested.payload.request_digest
    body = request.canonical_body()
    assert IMAGE.sha256 in body and (IMAGE.data or "") not in body  # pinned, not copied
    # The image counts in the context estimate (about an image's worth of tokens).
    assert d.state.history.window_tokens > 1600
    # Wire and snapshot keep it exactly.
    assert codec.decode_event(codec.encode_event(received)) == received
    assert state_from_dict(state_to_dict(d.state)) == d.state


def test_a_reference_is_kept_as_its_digest() -> None:
    ref = Attachment("image/png", hashlib.sha256(PNG).hexdigest())
    d = started(REGISTRY, ref)
    request = build_llm_request(d.state, d.state.turn.llm.request, REGISTRY)  # type: ignore[union-attr]
    assert request.messages[0].content[0] == MediaBlock("image/png", ref.sha256, None)


def test_a_model_that_cannot_see_is_refused_naming_the_capability() -> None:
    d = Driver(REGISTRY)
    events = d.send(SendMessage("look", attachments=(IMAGE,)), agent="blind")
    (rejected,) = [e.payload for e in events]
    assert isinstance(rejected, RequestRejected)
    assert "'claude-3-5-haiku'" in rejected.reason and "vision = false" in rejected.reason
    assert d.state.phase.value == "new"


def test_inline_attachments_over_the_request_limit_are_refused() -> None:
    small = AgentRegistry([seer()], REGISTRY.tools, limits=Limits(max_text_bytes=32))
    d = Driver(small)
    events = d.send(SendMessage("look", attachments=(DOC,)), agent="seer")
    (rejected,) = [e.payload for e in events]
    assert isinstance(rejected, RequestRejected)
    assert "TURNLOG_MAX_TEXT_BYTES" in rejected.reason and "by reference" in rejected.reason


def test_switching_to_a_blind_model_with_images_in_the_window_is_refused() -> None:
    d = started()
    d.answer("a green pixel and a PDF")
    (event,) = d.send(SetModel("claude-3-5-haiku"))
    assert isinstance(event.payload, RequestRejected)
    assert "cannot read the images" in event.payload.reason
    (event,) = d.send(SetModel("gpt-4o"))
    assert event.payload == ModelChanged("claude-sonnet-4-5", "gpt-4o")


@pytest.mark.parametrize(
    ("media_type", "digest", "problem"),
    [
        ("image/bmp", "0" * 64, "media_type"),
        ("image/png", "abc", "sha256"),
        ("image/png", "G" * 64, "sha256"),
    ],
)
def test_an_attachment_is_checked_when_built(media_type: str, digest: str, problem: str) -> None:
    with pytest.raises(InvalidRecord, match=problem):
        Attachment(media_type, digest)


# --------------------------------------------------------------------------- providers


def media_request(model: str, *, data: bool = True) -> LlmRequest:
    blocks = (
        MediaBlock("image/png", IMAGE.sha256, IMAGE.data if data else None),
        MediaBlock("application/pdf", DOC.sha256, DOC.data if data else None),
        TextBlock("what is in these?"),
    )
    return LlmRequest(
        model=model,
        system="You describe what you are shown.",
        messages=(Message("user", blocks),),
        tools=(),
        max_tokens=256,
        temperature=0.0,
    )


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key=FAKE_API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def gemini_server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as server:
        yield server


@pytest.fixture
async def anthropic(anthropic_server: FakeAnthropicServer) -> AsyncIterator[AnthropicProvider]:
    anthropic_server.reset()
    async with AnthropicProvider(
        api_key=FAKE_API_KEY, base_url=anthropic_server.base_url, retry=ONCE
    ) as p:
        yield p


@pytest.fixture
async def openai(openai_server: FakeOpenAIServer) -> AsyncIterator[OpenAICompatProvider]:
    openai_server.reset()
    async with OpenAICompatProvider(
        api_key=FAKE_OPENAI_KEY, base_url=f"{openai_server.base_url}/v1", retry=ONCE
    ) as p:
        yield p


@pytest.fixture
async def gemini(gemini_server: FakeGeminiServer) -> AsyncIterator[GeminiProvider]:
    gemini_server.reset()
    async with GeminiProvider(
        api_key=FAKE_GEMINI_KEY, base_url=gemini_server.base_url, retry=ONCE
    ) as p:
        yield p


@ASYNC
async def test_anthropic_gets_image_and_document_blocks(
    anthropic_server: FakeAnthropicServer, anthropic: AnthropicProvider
) -> None:
    anthropic_server.enqueue(FakeMessage("A green pixel and an empty PDF."))
    answer = await anthropic.complete(media_request("claude-sonnet-4-5"))
    assert answer.text == "A green pixel and an empty PDF."
    image, document, text = anthropic_server.requests[-1].body["messages"][0]["content"]
    assert image == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": IMAGE.data},
    }
    assert document["type"] == "document"
    assert document["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(document["source"]["data"]) == PDF
    assert text["text"] == "what is in these?"


@ASYNC
async def test_openai_gets_image_url_and_file_parts(
    openai_server: FakeOpenAIServer, openai: OpenAICompatProvider
) -> None:
    openai_server.enqueue(FakeCompletion("A pixel and a PDF."))
    answer = await openai.complete(media_request("gpt-4o"))
    assert answer.text == "A pixel and a PDF."
    user = openai_server.requests[-1].body["messages"][1]
    image, document, text = user["content"]
    assert image == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{IMAGE.data}"},
    }
    assert document["type"] == "file"
    assert document["file"]["file_data"] == f"data:application/pdf;base64,{DOC.data}"
    assert text == {"type": "text", "text": "what is in these?"}


@ASYNC
async def test_gemini_gets_inline_data_parts(
    gemini_server: FakeGeminiServer, gemini: GeminiProvider
) -> None:
    gemini_server.enqueue(FakeGeneration("A pixel and a PDF."))
    answer = await gemini.complete(media_request("gemini-2.5-flash"))
    assert answer.text == "A pixel and a PDF."
    parts = gemini_server.requests[-1].body["contents"][0]["parts"]
    assert parts[0]["inlineData"]["mime_type"] == "image/png"
    assert base64.urlsafe_b64decode(parts[0]["inlineData"]["data"]) == PNG
    assert parts[1]["inlineData"]["mime_type"] == "application/pdf"
    assert parts[2] == {"text": "what is in these?"}


@ASYNC
async def test_an_unresolved_reference_is_never_sent(
    anthropic_server: FakeAnthropicServer, anthropic: AnthropicProvider
) -> None:
    with pytest.raises(ProviderError) as caught:
        await anthropic.complete(media_request("claude-sonnet-4-5", data=False))
    assert caught.value.error_type == "invalid_request"
    assert "not resolved" in str(caught.value)
    assert anthropic_server.requests == []


@ASYNC
async def test_a_fallback_that_cannot_see_is_skipped(
    openai_server: FakeOpenAIServer, openai: OpenAICompatProvider
) -> None:
    routes = {m: Route("openai", openai, m) for m in ("deepseek-chat", "gpt-4o")}
    router = RoutedProvider(routes.__getitem__, retry=ONCE)
    openai_server.enqueue(FakeCompletion("seen"))
    answer = await router.complete(media_request("deepseek-chat"), fallbacks=("gpt-4o",))
    assert answer.model == "gpt-4o" and answer.fallback_used
    assert [r.model for r in openai_server.requests] == ["gpt-4o"]


def test_a_queued_message_keeps_its_attachments_for_its_turn() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("first"), agent="seer")
    queued = d.send(SendMessage("then this one", attachments=(IMAGE,)))
    assert [type(e.payload).__name__ for e in queued] == ["MessageQueued"]
    assert queued[0].payload.attachments == (IMAGE,)
    assert state_from_dict(state_to_dict(d.state)) == d.state  # the queue, snapshotted
    d.send(CompleteLlmCall(d.llm_call_id, "claude-sonnet-4-5", "done"))
    second = [e.payload for e in d.log if isinstance(e.payload, UserMessageReceived)][-1]
    assert second == UserMessageReceived("then this one", (IMAGE,))
    request = build_llm_request(d.state, d.state.turn.llm.request, REGISTRY)  # type: ignore[union-attr]
    assert request.messages[-1].content[0] == MediaBlock("image/png", IMAGE.sha256, IMAGE.data)


def test_a_summary_names_the_attachments_it_cannot_carry() -> None:
    from agents.context import summarize_request

    d = started()
    (entry,) = [e for e in d.state.history.entries.items() if e.kind == "u"]
    request = summarize_request([entry], model="scripted-summarizer", max_tokens=100)
    text = request.messages[0].content[0].text  # type: ignore[union-attr]
    assert "[attached pixel.png (image/png)]" in text
    assert "[attached notes.pdf (application/pdf)]" in text


def test_inline_bytes_must_be_what_the_attachment_names() -> None:
    forged = Attachment("image/png", hashlib.sha256(b"other").hexdigest(), IMAGE.data, "x.png")
    garbled = Attachment("image/png", IMAGE.sha256, "not base64!", "x.png")
    unstorable = Attachment("image/png", IMAGE.sha256, IMAGE.data, "x\x00.png")
    for bad, reason in [
        (forged, "but its bytes hash to"),
        (garbled, "not base64"),
        (unstorable, "cannot store"),
    ]:
        d = Driver(REGISTRY)
        (event,) = d.send(SendMessage("look", attachments=(bad,)), agent="seer")
        assert isinstance(event.payload, RequestRejected)
        assert reason in event.payload.reason, event.payload.reason
