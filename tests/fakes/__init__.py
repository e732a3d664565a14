"""Fakes of outside services that tests talk to over real sockets (never mocks).

- `tests.fakes.anthropic_server`: the Anthropic Messages API over HTTP (with SSE).
- `tests.fakes.openai_server`: the OpenAI Chat Completions API (and Azure's paths).
- `tests.fakes.gemini_server`: the Gemini API (generateContent, streamGenerateContent).
- `tests.fakes.fixtures`: pytest fixtures for them; enable with
  `pytest_plugins = ["tests.fakes.fixtures"]` in the root conftest.py.

A worker started as a subprocess reaches the fake Anthropic server through its
environment: `subprocess.Popen(..., env={**os.environ, **server.env()})` sets
ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY, and `provider_from_spec("anthropic")` uses both.
"""
