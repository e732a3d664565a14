"""Provider benchmark: conversation caching, and what each SDK costs per call.

    .venv/bin/python bench/providers.py [--calls 500] [--overhead-calls 300] [--image-kb 200]
                                        [--no-write]

Needs nothing but this repository: every figure is taken against the fake servers of
tests/fakes, over real HTTP on 127.0.0.1.

1. Caching (through the fake Messages API and the real anthropic SDK): one long session,
   500 calls, each adding one exchange (the model's answer, then a user message or a tool
   result, ~200 tokens), behind a fixed prefix of system prompt and three tools (~1,500
   tokens). The fake counts cache hits the way the API documents them (the prefix up to a
   `cache_control` breakpoint, read back at a later breakpoint within 20 blocks; minimum
   cacheable prefix 1,024 tokens, as for Sonnet). Run twice: conversation caching on
   (breakpoints on the newest message, the default) and off (tools and system prompt
   only). At calls 10, 100 and 500: the input billed at full price or more (input +
   cache writes), the input read from the cache, and the call's input cost at
   claude-sonnet-4-5's prices ($3 input, $3.75 cache write, $0.30 cache read per MTok).
2. Overhead per call, per SDK (anthropic, openai, google-genai), each against its fake
   server running in a process of its own (so its CPU does not count): the same request
   (a 20-message conversation with three tools, a streamed ~60-token answer), `--overhead-
   calls` calls one after the other. Reported: the CPU time of this process per call
   (request building, the SDK, HTTP, SSE parsing, our assembly into an LlmResponse), the
   wall time per call, and the same request sent as raw HTTP with aiohttp and its stream
   read to the end (the floor: HTTP and the server's streaming). The request building
   alone (LlmRequest → wire parameters) is timed apart.
3. The same, with an image of `--image-kb` KB attached inline to the last user message
   (what `turnlog send --image` sends): what base64 bytes cost each SDK per call. The
   request digest is timed too: it names the image by sha256, so it does not grow.

Prints the figures and writes the "Providers" section of BENCHMARKS.md (with the command)
unless --no-write. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
import structlog

from agents.events import Usage
from agents.llm import (
    LlmRequest,
    MediaBlock,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)
from agents.pricing import BUILTIN, cost_nanos
from agents.providers import RetryPolicy
from bench._report import write_section

SECTION = "## Providers"
CHECKPOINTS = (10, 100, 500)
SYSTEM = ("You are a careful assistant for a team of engineers. " * 90).strip()
TOOLS = tuple(
    ToolSpec(
        name,
        f"{name} tool. " * 30,
        {
            "type": "object",
            "properties": {"input": {"type": "string", "description": "what to work on " * 5}},
        },
    )
    for name in ("calculator", "search", "shell")
)
ANSWER = "Here is what I found: " + "the figures agree with the plan. " * 2


def _quiet() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))


# --------------------------------------------------------------------------- caching


def _exchange(n: int) -> tuple[Message, Message]:
    """The n-th exchange: the model's answer (every third one a tool call), then what
    the user (or the tool) says back. ~200 tokens each, the same size every time."""
    if n % 3 == 0:
        answer = Message(
            "assistant",
            (
                TextBlock(f"Step {n:04d}: checking the numbers."),
                ToolUseBlock(f"toolu_{n:06d}", "calculator", json.dumps({"input": f"{n} * 17"})),
            ),
        )
        reply = Message("user", (ToolResultBlock(f"toolu_{n:06d}", f"{n * 17:08d} " * 40),))
    else:
        answer = Message("assistant", (TextBlock(f"Step {n:04d}: " + "noted, go on. " * 20),))
        reply = Message("user", (TextBlock(f"Message {n:04d}: " + "next point to check. " * 22),))
    return answer, reply


def _session_request(calls: int) -> LlmRequest:
    messages: list[Message] = [Message("user", (TextBlock("Let us start. " * 40),))]
    for n in range(1, calls):
        messages.extend(_exchange(n))
    return LlmRequest("claude-sonnet-4-5", SYSTEM, tuple(messages), TOOLS, 512, 0.0)


async def _caching(calls: int, conversation: bool) -> dict[int, Usage]:
    from agents.providers.anthropic import AnthropicProvider
    from tests.fakes.anthropic_server import FAKE_API_KEY, FakeAnthropicServer, FakeMessage

    seen: dict[int, Usage] = {}
    with FakeAnthropicServer(
        api_key=FAKE_API_KEY, cache_min_tokens=1024, default=FakeMessage("ok", text_chunk_chars=64)
    ) as server:
        async with AnthropicProvider(
            api_key=FAKE_API_KEY,
            base_url=server.base_url,
            cache_conversation=conversation,
            retry=RetryPolicy(max_attempts=1),
        ) as provider:
            messages: list[Message] = [Message("user", (TextBlock("Let us start. " * 40),))]
            for call in range(1, calls + 1):
                request = LlmRequest("claude-sonnet-4-5", SYSTEM, tuple(messages), TOOLS, 512, 0.0)
                response = await provider.complete(request)
                if call in CHECKPOINTS or call == calls:
                    seen[call] = response.usage
                messages.extend(_exchange(call))
    return seen


# --------------------------------------------------------------------------- overhead


def _serve(kind: str, queue: Any, stop: Any) -> None:
    """A fake server in a process of its own; puts its base URL on `queue`."""
    if kind == "anthropic":
        from tests.fakes.anthropic_server import FAKE_API_KEY, FakeAnthropicServer, FakeMessage

        server: Any = FakeAnthropicServer(
            api_key=FAKE_API_KEY, default=FakeMessage(ANSWER, text_chunk_chars=16)
        )
    elif kind == "openai":
        from tests.fakes.openai_server import FakeCompletion, FakeOpenAIServer

        server = FakeOpenAIServer(default=FakeCompletion(ANSWER, text_chunk_chars=16))
    else:
        from tests.fakes.gemini_server import FakeGeminiServer, FakeGeneration

        server = FakeGeminiServer(default=FakeGeneration(ANSWER, text_chunk_chars=16))
    with server:
        queue.put(server.base_url)
        stop.wait()


def _provider(kind: str, url: str) -> Any:
    if kind == "anthropic":
        from agents.providers.anthropic import AnthropicProvider
        from tests.fakes.anthropic_server import FAKE_API_KEY

        return AnthropicProvider(
            api_key=FAKE_API_KEY, base_url=url, retry=RetryPolicy(max_attempts=1)
        )
    if kind == "openai":
        from agents.providers.openai_compat import OpenAICompatProvider
        from tests.fakes.openai_server import FAKE_OPENAI_KEY

        return OpenAICompatProvider(
            api_key=FAKE_OPENAI_KEY, base_url=f"{url}/v1", retry=RetryPolicy(max_attempts=1)
        )
    from agents.providers.gemini import GeminiProvider
    from tests.fakes.gemini_server import FAKE_GEMINI_KEY

    return GeminiProvider(api_key=FAKE_GEMINI_KEY, base_url=url, retry=RetryPolicy(max_attempts=1))


def _wire(
    kind: str, request: LlmRequest, url: str
) -> tuple[str, dict[str, str], bytes, Callable[[], object]]:
    """(url, headers, body, build) of the raw-HTTP twin of one call, and the request
    building step alone."""
    model = {
        "anthropic": "claude-sonnet-4-5",
        "openai": "gpt-4o-mini",
        "gemini": "gemini-2.5-flash",
    }[kind]
    request = LlmRequest(model, request.system, request.messages, request.tools, 512, 0.0)
    if kind == "anthropic":
        from agents.providers.anthropic import build_params
        from tests.fakes.anthropic_server import FAKE_API_KEY

        params = {**build_params(request, model), "stream": True}
        headers = {
            "x-api-key": FAKE_API_KEY,
            "anthropic-version": "2026-10-21",
            "content-type": "application/json",
        }
        return (
            f"{url}/v1/messages",
            headers,
            json.dumps(params).encode(),
            lambda: build_params(request, model),
        )
    if kind == "openai":
        from agents.providers.openai_compat import build_params as openai_params
        from tests.fakes.openai_server import FAKE_OPENAI_KEY

        params = {
            **openai_params(request, model),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        headers = {"authorization": f"Bearer {FAKE_OPENAI_KEY}", "content-type": "application/json"}
        return (
            f"{url}/v1/chat/completions",
            headers,
            json.dumps(params).encode(),
            lambda: openai_params(request, model),
        )
    from agents.providers.gemini import build_config, build_contents
    from tests.fakes.gemini_server import FAKE_GEMINI_KEY

    body = {
        "contents": [
            c.model_dump(mode="json", exclude_none=True, by_alias=True)
            for c in build_contents(request, model)
        ],
        "systemInstruction": {"parts": [{"text": request.system}]},
        "generationConfig": {"maxOutputTokens": 512},
    }
    headers = {"x-goog-api-key": FAKE_GEMINI_KEY, "content-type": "application/json"}
    return (
        f"{url}/v1beta/models/{model}:streamGenerateContent?alt=sse",
        headers,
        json.dumps(body).encode(),
        lambda: (build_contents(request, model), build_config(request, 600_000)),
    )


def _with_image(request: LlmRequest, image: bytes) -> LlmRequest:
    """`request` with `image` (PNG bytes) attached inline to its last user message."""
    import base64
    import hashlib

    block = MediaBlock(
        "image/png", hashlib.sha256(image).hexdigest(), base64.b64encode(image).decode()
    )
    last = request.messages[-1]
    messages = (*request.messages[:-1], Message(last.role, (block, *last.content)))
    return LlmRequest(
        request.model, request.system, messages, request.tools, request.max_tokens, 0.0
    )


def _image(kb: int) -> bytes:
    """A PNG signature followed by incompressible bytes: `kb` KB, as a photo would be."""
    import random

    rng = random.Random(15)
    return b"\x89PNG\r\n\x1a\n" + rng.randbytes(kb * 1024 - 8)


async def _overhead(kind: str, calls: int, image: bytes | None = None) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    queue, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(kind, queue, stop), daemon=True)
    server.start()
    try:
        url = queue.get(timeout=60)
        request = _session_request(10)  # 19 messages, 3 tools
        model = {
            "anthropic": "claude-sonnet-4-5",
            "openai": "gpt-4o-mini",
            "gemini": "gemini-2.5-flash",
        }[kind]
        request = LlmRequest(model, request.system, request.messages, request.tools, 512, 0.0)
        if image is not None:
            request = _with_image(request, image)
        target, headers, body, build = _wire(kind, request, url)
        start = time.process_time()
        for _ in range(200):
            build()
        build_us = (time.process_time() - start) / 200 * 1e6
        start = time.process_time()
        for _ in range(200):
            LlmRequest(
                *(getattr(request, f) for f in ("model", "system", "messages")),
                request.tools,
                request.max_tokens,
                0.0,
            ).digest()
        digest_us = (time.process_time() - start) / 200 * 1e6

        async with _provider(kind, url) as provider:
            for _ in range(20):  # warm up: connections, imports, caches
                await provider.complete(request)
            walls: list[float] = []
            cpu0 = time.process_time()
            for _ in range(calls):
                t0 = time.perf_counter()
                await provider.complete(request)
                walls.append(time.perf_counter() - t0)
            sdk_cpu = (time.process_time() - cpu0) / calls

        raw_walls: list[float] = []
        async with aiohttp.ClientSession() as session:

            async def once() -> None:
                async with session.post(target, data=body, headers=headers) as resp:
                    resp.raise_for_status()
                    async for _ in resp.content.iter_any():
                        pass

            for _ in range(20):
                await once()
            cpu0 = time.process_time()
            for _ in range(calls):
                t0 = time.perf_counter()
                await once()
                raw_walls.append(time.perf_counter() - t0)
            raw_cpu = (time.process_time() - cpu0) / calls
    finally:
        stop.set()
        server.join(10)
    return {
        "build_us": build_us,
        "digest_us": digest_us,
        "sdk_cpu_ms": sdk_cpu * 1e3,
        "sdk_wall_ms": statistics.median(walls) * 1e3,
        "sdk_wall_p90_ms": statistics.quantiles(walls, n=10)[-1] * 1e3,
        "raw_cpu_ms": raw_cpu * 1e3,
        "raw_wall_ms": statistics.median(raw_walls) * 1e3,
        "body_kb": len(body) / 1024,
    }


# --------------------------------------------------------------------------- report


def _usd(usage: Usage) -> float:
    input_only = Usage(usage.input_tokens, 0, usage.cache_read_tokens, usage.cache_write_tokens)
    return cost_nanos(BUILTIN.info("claude-sonnet-4-5"), input_only) / 1e9


def _markdown(
    args: argparse.Namespace,
    caching: dict[bool, dict[int, Usage]],
    overhead: dict[str, dict[str, float]],
    media: dict[str, dict[str, float]] | None = None,
) -> str:
    command = (
        "`.venv/bin/python bench/providers.py"
        + (f" --calls {args.calls}" if args.calls != 500 else "")
        + (f" --overhead-calls {args.overhead_calls}" if args.overhead_calls != 300 else "")
        + (f" --image-kb {args.image_kb}" if args.image_kb != 200 else "")
        + "`"
    )
    today = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [
        SECTION,
        "",
        (
            f"Measured with {command} on {today} (fake servers of tests/fakes "
            "over HTTP on 127.0.0.1; the real SDKs; a 2-core machine shared with other "
            "jobs, so wall times are noisy and CPU per call is the steadier figure)."
        ),
        "",
        "### Conversation caching (Anthropic, one long session)",
        "",
        (
            "Each call adds one ~200-token exchange behind a ~1,500-token prefix (system "
            "prompt, three tools). Billed at full price or more: input + cache writes; "
            "read: cache reads (10% of the input price). Cost: the call's input at "
            "claude-sonnet-4-5 prices."
        ),
        "",
        "| call | caching | input | cache write | cache read | input cost of the call |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for call in sorted(caching[True]):
        for on in (False, True):
            u = caching[on][call]
            lines.append(
                f"| {call} | {'conversation' if on else 'prefix only'} | "
                f"{u.input_tokens:,} | {u.cache_write_tokens:,} | "
                f"{u.cache_read_tokens:,} | ${_usd(u):.5f} |"
            )
    last = max(caching[True])
    off, on = caching[False][last], caching[True][last]
    lines += [
        "",
        (
            f"At call {last}, the full-price input per call is "
            f"{on.input_tokens + on.cache_write_tokens:,} tokens with the conversation "
            f"cached against {off.input_tokens + off.cache_write_tokens:,} without "
            f"(the input of that call costs {_usd(off) / max(_usd(on), 1e-12):.1f}x less); "
            "with caching the full-price part stays the size of one exchange from call 2 "
            "on, whatever the length of the session."
        ),
        "",
        "### Overhead per call, per SDK",
        "",
        (
            f"{args.overhead_calls} streamed calls of one request (19 messages, three tools, "
            "~60-token answer) after 20 warm-up calls; the fake server in a process of "
            "its own. CPU: this process's CPU time per call. Raw: the same request body "
            "posted with aiohttp and its SSE stream read to the end (no SDK, no parsing)."
        ),
        "",
        (
            "| SDK | build request | CPU per call | wall per call (median / p90) | "
            "raw HTTP CPU | raw HTTP wall | body |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, o in overhead.items():
        lines.append(
            f"| {kind} | {o['build_us']:.0f} us | {o['sdk_cpu_ms']:.2f} ms | "
            f"{o['sdk_wall_ms']:.2f} / {o['sdk_wall_p90_ms']:.2f} ms | "
            f"{o['raw_cpu_ms']:.2f} ms | {o['raw_wall_ms']:.2f} ms | {o['body_kb']:.1f} KB |"
        )
    lines += [
        "",
        "The SDK's part of a call is its CPU per call less the raw HTTP CPU: "
        + ", ".join(f"{k} {o['sdk_cpu_ms'] - o['raw_cpu_ms']:.2f} ms" for k, o in overhead.items())
        + ". Against an LLM call of seconds it is noise in latency; it is CPU of "
        "the worker that executes the calls (the openai SDK spends about half of it "
        "transforming the request parameters, google-genai in its pydantic "
        "converters).",
    ]
    if media:
        kb = args.image_kb
        lines += [
            "",
            f"### With a {kb} KB image inline",
            "",
            (
                f"The same request with a {kb} KB PNG attached inline to its last user message "
                "(what `turnlog send --image` sends): base64 in the request, an `image` "
                "block (Anthropic), an `image_url` data URL (OpenAI), `inline_data` "
                "(Gemini). Digest: the request digest, which names the image by its sha256 "
                "(computed once, when the message is sent), so it costs what it costs "
                "without the image."
            ),
            "",
            "| SDK | build request | digest | CPU per call | +CPU for the image | wall per call "
            "(median / p90) | raw HTTP CPU | body |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind, o in media.items():
            plain = overhead[kind]
            lines.append(
                f"| {kind} | {o['build_us']:.0f} us | {o['digest_us']:.0f} us | "
                f"{o['sdk_cpu_ms']:.2f} ms | {o['sdk_cpu_ms'] - plain['sdk_cpu_ms']:+.2f} ms | "
                f"{o['sdk_wall_ms']:.2f} / {o['sdk_wall_p90_ms']:.2f} ms | "
                f"{o['raw_cpu_ms']:.2f} ms | {o['body_kb']:.1f} KB |"
            )
        added = ", ".join(
            f"{k} {o['sdk_cpu_ms'] - overhead[k]['sdk_cpu_ms']:+.1f} ms" for k, o in media.items()
        )
        lines += [
            "",
            f"Reading: the image makes the body {kb} KB larger (base64: a third more); what "
            f"it adds to a call's CPU is the SDK encoding and sending that body: {added} "
            "here, of the order of this shared machine's run-to-run noise (the '+CPU' "
            "column compares two series of the same process, a minute apart). The digest "
            "does not grow with the image, and the log holds the bytes once, in the message.",
        ]
    return "\n".join([*lines, ""])


async def _main(args: argparse.Namespace) -> None:
    _quiet()
    caching: dict[bool, dict[int, Usage]] = {}
    for on in (False, True):
        started = time.perf_counter()
        caching[on] = await _caching(args.calls, on)
        print(
            f"caching {'conversation' if on else 'prefix only'}: {args.calls} calls in "
            f"{time.perf_counter() - started:.1f} s"
        )
        for call, u in sorted(caching[on].items()):
            print(
                f"  call {call:>4}: input {u.input_tokens:>7,}  write {u.cache_write_tokens:>7,}"
                f"  read {u.cache_read_tokens:>7,}  input cost ${_usd(u):.5f}"
            )
    overhead: dict[str, dict[str, float]] = {}
    for kind in ("anthropic", "openai", "gemini"):
        overhead[kind] = await _overhead(kind, args.overhead_calls)
        o = overhead[kind]
        print(
            f"{kind:<10} build {o['build_us']:6.0f} us  cpu {o['sdk_cpu_ms']:6.2f} ms/call  "
            f"wall {o['sdk_wall_ms']:6.2f} ms (p90 {o['sdk_wall_p90_ms']:.2f})  "
            f"raw cpu {o['raw_cpu_ms']:.2f} ms  raw wall {o['raw_wall_ms']:.2f} ms"
        )
    media: dict[str, dict[str, float]] = {}
    if args.image_kb:
        image = _image(args.image_kb)
        for kind in ("anthropic", "openai", "gemini"):
            media[kind] = await _overhead(kind, args.overhead_calls, image)
            o = media[kind]
            print(
                f"{kind:<10} +{args.image_kb} KB image: build {o['build_us']:6.0f} us  "
                f"digest {o['digest_us']:.0f} us  cpu {o['sdk_cpu_ms']:6.2f} ms/call  "
                f"wall {o['sdk_wall_ms']:6.2f} ms  body {o['body_kb']:.0f} KB"
            )
    if not args.no_write:
        write_section(SECTION, _markdown(args, caching, overhead, media))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=500, help="calls of the long session")
    parser.add_argument("--overhead-calls", type=int, default=300, help="calls per SDK")
    parser.add_argument(
        "--image-kb", type=int, default=200, help="image attached in part 3 (0: skip it)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
