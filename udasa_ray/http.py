"""One small JSON-over-HTTP client for the OpenAI-compatible endpoints (the LLM judge, moderation).

Stdlib only. A POST is retried with exponential backoff and jitter on network errors, timeouts,
HTTP 429 and 5xx (a Retry-After header, when present, sets the wait); any other 4xx means the
request itself is wrong and stops at once. The API key is read from the environment variable
whose *name* the caller gives, at each request: it is sent as a bearer token and never stored,
logged, or put in an error message or repr (a server that echoes it back has it masked).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

log = logging.getLogger(__name__)

EXCERPT_CHARS = 200  # of a failing response's body, in error messages


class EndpointError(RuntimeError):
    """A request to `url` failed. `status` is the HTTP status (None: no HTTP answer)."""

    def __init__(self, message: str, url: str, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.url, self.status, self.attempts = url, status, attempts


class EndpointRejected(EndpointError):
    """A 4xx other than 429: the request is wrong (bad key, unknown model, bad payload); not retried."""


class EndpointUnavailable(EndpointError):
    """Every attempt failed on a transient error (HTTP 429 or 5xx, a timeout, the network).
    `reason` is the last one, e.g. "HTTP 503", "timed out", "unreachable (Connection refused)"."""

    def __init__(self, message: str, url: str, reason: str, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message, url, status, attempts)
        self.reason = reason


class EndpointUnreachable(EndpointUnavailable):
    """No HTTP answer at all on any attempt, and not for a timeout (refused, unknown host, dropped)."""


def retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class JSONClient:
    """POST JSON to one endpoint, get JSON back.

    retries: extra attempts after a transient failure; backoff_s * 2**k (capped at max_backoff_s)
    plus up to `jitter` of it at random is the wait before retry k + 1, unless the server's
    Retry-After says otherwise (capped at max_retry_after_s). Thread-safe: it holds no state
    between requests, so one client can serve a thread pool.
    """

    def __init__(self, url: str, *, api_key_env: str | None = None, timeout_s: float = 30.0, retries: int = 2,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0, jitter: float = 0.25,
                 max_retry_after_s: float = 60.0, what: str = "endpoint") -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.url = url
        self.api_key_env = api_key_env  # the variable's name, not its value
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s, self.max_backoff_s, self.jitter = backoff_s, max_backoff_s, jitter
        self.max_retry_after_s = max_retry_after_s
        self.what = what  # names the endpoint in messages: "judge", "moderation endpoint"

    def __repr__(self) -> str:
        return (f"JSONClient({self.url!r}, api_key_env={self.api_key_env!r}, timeout_s={self.timeout_s}, "
                f"retries={self.retries})")

    def _key(self) -> str:
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt `attempt` (0-based) when the server names none."""
        base = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return base + random.uniform(0, self.jitter * base)

    def post(self, payload: dict) -> dict:
        """The decoded JSON reply to `payload`, or an EndpointError (see the classes above)."""
        key = self._key()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(payload).encode()
        attempts = 1 + self.retries
        for attempt in range(attempts):
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            wait = None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    body = resp.read()
            except urllib.error.HTTPError as e:
                excerpt = _excerpt(e, key)
                status, reason = e.code, f"HTTP {e.code}"
                if status < 500 and status != 429:
                    raise EndpointRejected(f"{self.what} {self.url} answered HTTP {status}: {excerpt}",
                                           self.url, status, attempt + 1) from None
                wait = retry_after_s(e.headers.get("Retry-After") if e.headers else None)
                if wait is not None:
                    wait = min(wait, self.max_retry_after_s)
                network = False
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as e:
                cause = getattr(e, "reason", e)
                status, network = None, not isinstance(cause, TimeoutError)
                reason = f"unreachable ({_redact(str(cause), key)})" if network else "timed out"
            else:
                try:
                    return json.loads(body)
                except ValueError:
                    text = _flat(_redact(body[: 16 * EXCERPT_CHARS].decode("utf-8", "replace"), key))
                    raise EndpointError(f"{self.what} {self.url} answered with invalid JSON: {text}",
                                        self.url, 200, attempt + 1) from None
            if attempt + 1 < attempts:
                wait = self.backoff(attempt) if wait is None else wait
                log.warning("%s %s: %s; retry %d of %d in %.2fs", self.what, self.url, reason, attempt + 1,
                            self.retries, wait)
                time.sleep(wait)
        cls = EndpointUnreachable if network else EndpointUnavailable
        raise cls(f"{self.what} {self.url}: {reason} after {attempts} attempts", self.url, reason, status, attempts)


def _redact(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text


def _excerpt(e: urllib.error.HTTPError, key: str) -> str:
    try:
        raw = e.read(16 * EXCERPT_CHARS)
    except Exception:  # noqa: BLE001 - a body we cannot read is no reason to lose the status
        raw = b""
    return _flat(_redact(raw.decode("utf-8", "replace"), key))  # masked before it is cut


def _flat(text: str) -> str:
    """A body excerpt for a one-line message: whitespace runs collapsed, EXCERPT_CHARS at most."""
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."
