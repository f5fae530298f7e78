"""Request limits enforced before any handler sees the request: body size, and no NUL characters.

PostgreSQL text and JSONB cannot hold U+0000, so a NUL that reached a handler would fail the query and
answer 500, and on SQLite it would be stored and handed to other services that cannot store it. It is
refused at the door instead, with a 422 problem naming where it was (path, query or body), whatever the
database. Every other character — Chinese, emoji, right-to-left marks, other control characters — is
accepted and returned verbatim. Lone UTF-16 surrogates (`"\\ud800"` in JSON) are not characters at all
and are refused the same way, since they can be neither stored nor encoded in a response.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import PROBLEM_JSON

# A JSON escape is a backslash run of odd length before `u` and four hex digits.
_UNICODE_ESCAPE = re.compile(rb"(\\+)u([0-9a-fA-F]{4})")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def forbidden_escape(body: bytes) -> str | None:
    """Why a JSON body may not be accepted (a NUL or a lone surrogate in it), or None."""
    if b"\\u0000" not in body and _SURROGATE_ESCAPE.search(body) is None:
        return None  # the common case, decided without walking the escapes
    high_end: int | None = None  # where an unpaired high surrogate's escape ended
    for match in _UNICODE_ESCAPE.finditer(body):
        if len(match.group(1)) % 2 == 0:
            if high_end is not None:
                return "a lone UTF-16 surrogate"
            continue  # an escaped backslash followed by literal text
        code = int(match.group(2), 16)
        start = match.end() - 6
        if code == 0:
            return "the NUL character (U+0000)"
        if 0xDC00 <= code <= 0xDFFF:
            if high_end != start:
                return "a lone UTF-16 surrogate"
            high_end = None
            continue
        if high_end is not None:
            return "a lone UTF-16 surrogate"
        if 0xD800 <= code <= 0xDBFF:
            high_end = match.end()
    return "a lone UTF-16 surrogate" if high_end is not None else None


def _is_json(scope: Scope) -> bool:
    content_type = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-type"), b"")
    return b"json" in content_type.lower()


class BodySizeLimitMiddleware:
    """Answers 413 for a body over `max_bytes` and 422 for NUL characters, before the app runs."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            await _refuse_nul(scope, send, "path", "the NUL character (U+0000)")
            return
        query: bytes = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            await _refuse_nul(scope, send, "query", "the NUL character (U+0000)")
            return
        declared = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = self.max_bytes + 1
            if length > self.max_bytes:
                await self._reject(scope, send)
                return
            if length == 0 or not _is_json(scope):
                await self.app(scope, receive, send)
                return
        # Read the body here (bounded), look into it, then hand it on: a JSON handler reads it whole anyway.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _is_json(scope) and (why := forbidden_escape(body)) is not None:
            await _refuse_nul(scope, send, "body", why)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        await send_problem(
            send,
            413,
            {
                "type": "https://kefu.dev/problems/payload-too-large",
                "title": "Payload Too Large",
                "status": 413,
                "detail": f"The request body exceeds {self.max_bytes} bytes.",
                "instance": scope.get("path"),
            },
        )


async def _refuse_nul(scope: Scope, send: Send, where: str, what: str) -> None:
    message = f"Text may not contain {what}."
    await send_problem(
        send,
        422,
        {
            "type": "https://kefu.dev/problems/validation",
            "title": "Validation failed",
            "status": 422,
            "detail": message,
            "instance": scope["path"].replace("\x00", "\ufffd"),
            "errors": [{"loc": [where], "msg": message, "type": "string_unstorable_character"}],
        },
    )


async def send_problem(
    send: Send, status: int, document: dict[str, object], *, headers: dict[str, str] | None = None
) -> None:
    """Answer with a problem document from ASGI middleware, where no exception handler is in reach."""
    body = json.dumps(document).encode()
    raw = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
