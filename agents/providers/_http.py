"""HTTP details every SDK-backed adapter shares. Nothing here sends anything.

- `TRANSPORT_ERRORS` / `TRANSPORT_TIMEOUTS`: a failure in the middle of a stream reaches
  an adapter raw from the HTTP library under the SDK rather than wrapped by it (anthropic
  2.x and openai 3.x use httpx2, older releases httpx; google-genai uses aiohttp when it
  is installed).
- `retry_after_s`: a server's retry-after (seconds or an HTTP date; or retry-after-ms).
"""

from __future__ import annotations

import importlib
import time
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["TRANSPORT_ERRORS", "TRANSPORT_TIMEOUTS", "retry_after_s"]


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    errors: list[type[BaseException]] = []
    timeouts: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(module.HTTPError)
        timeouts.append(module.TimeoutException)
    try:
        aiohttp = importlib.import_module("aiohttp")
    except ImportError:
        pass
    else:
        errors.append(aiohttp.ClientError)
        timeouts.append(aiohttp.ServerTimeoutError)
    return tuple(errors), tuple(timeouts)


TRANSPORT_ERRORS, TRANSPORT_TIMEOUTS = _transport_errors()


def retry_after_s(headers: Any) -> float | None:
    """A server's retry-after (seconds or HTTP date; or retry-after-ms), if any."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
