"""Request limits: body size (checked on ``Content-Length`` and on the streamed bytes) and
per-principal request rate.

Starlette has a body-size middleware, but it answers in plain text; this one answers with the one
error body. The rate limiter is a token bucket per principal: local to one gateway process by
default, or kept in Redis (``rate_limit_redis_url``) so that every replica and worker draws from the
same bucket — the limit then holds for the cluster, not per process.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Protocol

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.api.errors import error_body
from sandbox.errors import RateLimited, StoreUnavailable
from sandbox.settings import Settings


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


class Limiter(Protocol):
    """Takes one request from a principal's allowance or raises ``RateLimited``."""

    def check(self, principal: str) -> None: ...


# KEYS[1] the bucket; ARGV capacity, refill per second, expiry. Redis's own clock, so replicas'
# clocks do not matter. Returns {taken (0/1), seconds to wait}.
_TAKE = """
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local taken, wait = 0, 0
if tokens >= 1 then
  tokens, taken = tokens - 1, 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {taken, wait}
"""


class SharedRateLimiter:
    """The token bucket per principal, kept in Redis for every gateway replica at once."""

    def __init__(self, url: str, per_minute: int, prefix: str = "sandbox:rate:") -> None:
        # imported here: gateways without a shared limit (and the servers' runtime, which may be
        # another patch release of Python than redis's dependencies were resolved for) never load it
        import redis  # noqa: PLC0415

        self.capacity = per_minute
        self.refill_per_second = per_minute / 60.0
        self.prefix = prefix
        self._unavailable = redis.RedisError
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._take = self._client.register_script(_TAKE)

    def check(self, principal: str) -> None:
        """Take one request from the shared bucket; ``RateLimited`` when empty, ``StoreUnavailable``
        (503) when Redis cannot be asked: the limit is never silently dropped."""
        try:
            taken, wait = self._take(
                keys=[self.prefix + principal], args=[self.capacity, self.refill_per_second, 120]
            )
        except self._unavailable as error:
            raise StoreUnavailable(
                "The rate-limit store is unavailable right now; retry after the indicated delay.",
                details={"retry_after_seconds": 2},
            ) from error
        if not taken:
            raise RateLimited(
                f"More than {self.capacity} requests per minute; wait {wait} s and retry.",
                details={"retry_after_seconds": int(wait)},
            )


def make_rate_limiter(settings: Settings) -> Limiter:
    """The shared limiter when ``rate_limit_redis_url`` is set, else this process's own buckets."""
    if settings.rate_limit_redis_url:
        return SharedRateLimiter(settings.rate_limit_redis_url, settings.rate_limit_per_minute)
    return RateLimiter(settings.rate_limit_per_minute)
