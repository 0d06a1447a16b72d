"""Strict JSON request bodies: one reading of every request, whoever parses it.

Python's ``json`` keeps the last of two equal keys, and a proxy or a client library in front of
the gateway may keep the first; a UTF-8 byte-order mark or a ``NaN`` literal is read by some
parsers and refused by others. So that no two parsers can disagree on what was asked (and
charged), a JSON body with a duplicate key, a BOM, invalid UTF-8 or a non-standard constant is
refused with 422 before any route sees it. The body is read once here and handed on unchanged.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.api.errors import error_body

BOM = b"\xef\xbb\xbf"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyRefused(ValueError):
    """The body breaks a strict-JSON rule: ``code`` names it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_body(body: bytes) -> None:
    """Raise ``BodyRefused`` unless ``body`` is strict JSON (UTF-8, no BOM, unique keys, no NaN)."""
    if body.startswith(BOM):
        raise BodyRefused(
            "request.json_bom", "The JSON body starts with a byte-order mark; send plain UTF-8."
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRefused("request.json_invalid", "The JSON body is not valid UTF-8.") from None
    try:
        json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except BodyRefused:
        raise
    except ValueError:
        raise BodyRefused(
            "request.json_invalid", "The body is not valid JSON; send one JSON object."
        ) from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise BodyRefused(
                "request.json_duplicate_key",
                f"The JSON body names {key!r} more than once; send each field once.",
            )
        seen[key] = value
    return seen


def _no_constant(name: str) -> NoReturn:
    raise BodyRefused(
        "request.json_invalid", f"The JSON body contains {name}, which is not a JSON number; send a number."
    )


class StrictJSONBody:
    """ASGI middleware applying ``check_body`` to JSON request bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                check_body(body)
            except BodyRefused as refused:
                await _refuse(send, refused)
                return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}]), send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return bool(media == b"application/json" or media.endswith(b"+json"))
    return True  # FastAPI reads a body without a content type as JSON too


def _replay(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive


async def _refuse(send: Send, refused: BodyRefused) -> None:
    body = json.dumps(error_body(refused.code, refused.message, rule=refused.code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
