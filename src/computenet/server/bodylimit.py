"""Request bodies are limited: 413 with `ErrorBody{field: "body"}` past the limit.

An ASGI middleware, so that the limit holds before anything parses the body:
a declared `Content-Length` over the limit is answered at once, without
reading; a body without one (chunked, streamed) is counted as it arrives and
refused as soon as it passes the limit. The center protocol has its own,
larger limit: its log appends carry up to `MAX_LOG_APPEND_CHARS` characters.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CENTER_PREFIX = "/center/"


class BodyTooLarge(HTTPException):
    """Raised while reading a streamed body that passes the limit (answered as 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")
        self.hint = f"send at most {limit} bytes"


class BodyLimit:
    """ASGI middleware: at most `limit` bytes per request body (`center_limit` under /center/)."""

    def __init__(self, app: ASGIApp, *, limit: int, center_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.center_limit = center_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a declared oversize body at once; count a streamed one as it comes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = self.center_limit if path.startswith(CENTER_PREFIX) else self.limit
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await _refuse(send, limit)
                    return
                break
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return msg

        await self.app(scope, counted, send)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": f"the request body is over {limit} bytes",
            "field": "body",
            "hint": f"send at most {limit} bytes",
        }
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
