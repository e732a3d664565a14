"""Fakes of outside services that tests talk to over real sockets (never mocks).

- `tests.fakes.anthropic_server`: the Anthropic Messages API over HTTP (with SSE).
- `tests.fakes.fixtures`: pytest fixtures for them; enable with
  `pytest_plugins = ["tests.fakes.fixtures"]` in the root conftest.py.
"""
