"""pytest fixtures for the fakes. Enable with `pytest_plugins = ["tests.fakes.fixtures"]`
in the root conftest.py, or import the fixture by name into a test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_server import FAKE_API_KEY, FakeAnthropicServer
from tests.fakes.gemini_server import FAKE_GEMINI_KEY, FakeGeminiServer
from tests.fakes.openai_server import FAKE_OPENAI_KEY, FakeOpenAIServer

__all__ = ["fake_anthropic", "fake_anthropic_api_key", "fake_gemini", "fake_openai"]


@pytest.fixture
def fake_anthropic_api_key() -> str:
    """The only key `fake_anthropic` accepts; tests also scan outputs for it."""
    return FAKE_API_KEY


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropicServer]:
    """A started fake Messages API server (fresh per test), stopped afterwards.
    Point the SDK at `fake_anthropic.base_url` with `FAKE_API_KEY`."""
    with FakeAnthropicServer(api_key=FAKE_API_KEY) as server:
        yield server


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A started fake Chat Completions server (fresh per test); key `FAKE_OPENAI_KEY`,
    base URL `fake_openai.base_url + "/v1"`."""
    with FakeOpenAIServer(api_key=FAKE_OPENAI_KEY) as server:
        yield server


@pytest.fixture
def fake_gemini() -> Iterator[FakeGeminiServer]:
    """A started fake Gemini API server (fresh per test); key `FAKE_GEMINI_KEY`."""
    with FakeGeminiServer(api_key=FAKE_GEMINI_KEY) as server:
        yield server
