"""Pure ASGI middleware (no per-request task or thread): the request body size limit."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with 413 ``{"detail", "code"}``, declared or streamed (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self, size: int | None = None) -> str:
        got = f"; got {size} bytes" if size is not None else ""
        return f"request body must be at most {self.max_bytes} bytes (PENG4NN_MAX_BODY_BYTES){got}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    return await self._refuse(send, int(value))
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException is re-raised by FastAPI's body reader and reaches our error handler.
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send, size: int) -> None:
        body = json.dumps({"detail": self._detail(size), "code": "body_too_large"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
