"""Request limits: body size (checked on ``Content-Length`` and on the streamed bytes) and
per-principal request rate.

Starlette has a body-size middleware, but it answers in plain text; this one answers with the one
error body. The rate limiter is a token bucket per principal, local to one gateway process (with
several workers each keeps its own buckets).
"""

from __future__ import annotations

import json
import math
import threading
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.api.errors import error_body
from sandbox.errors import RateLimited


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the streamed body passes the limit."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class BodySizeLimit:
    """ASGI middleware refusing request bodies larger than ``max_bytes`` with a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body(
                "request.too_large",
                f"The request body is larger than {self.max_bytes} bytes; send a smaller request.",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RateLimiter:
    """Token bucket per principal: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, principal: str) -> None:
        """Take one request from the principal's bucket; ``RateLimited`` when it is empty."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(principal, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill_per_second)
            if tokens < 1.0:
                self._buckets[principal] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.refill_per_second)
                raise RateLimited(
                    f"More than {int(self.capacity)} requests per minute; wait {wait} s and retry.",
                    details={"retry_after_seconds": wait},
                )
            self._buckets[principal] = (tokens - 1.0, now)
