"""What stands between a request and the routers: token auth, signed download tickets, and the
upload size limit.

With a token (--token or PEFTLAB_TOKEN) every /api call needs `Authorization: Bearer <token>`;
a browser link cannot set a header, so a download (a GET of a .zip or .html under /api/) may
instead carry a ticket from POST /api/tickets: an HMAC of the path and its expiry, signed
with a secret made at start (it dies with the process), valid TICKET_SECONDS. Bodies over the
upload limit are refused with 413 by Content-Length, or while they arrive.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

TICKET_SECONDS = 300
DOWNLOADS = (".zip", ".html")


class Tickets:
    """Signed, short-lived links to one download path."""

    def __init__(self, seconds: int = TICKET_SECONDS) -> None:
        self.secret = secrets.token_bytes(32)
        self.seconds = seconds

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self.secret, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()

    def issue(self, path: str) -> dict[str, Any]:
        expires = int(time.time()) + self.seconds
        return {"url": f"{path}?expires={expires}&ticket={self.sign(path, expires)}", "expires": expires}

    def valid(self, path: str, ticket: str, expires: str) -> bool:
        return expires.isdigit() and int(expires) >= time.time() and hmac.compare_digest(
            ticket, self.sign(path, int(expires)))


def install(app: FastAPI, token: str | None, tickets: Tickets, limit_bytes: int) -> None:
    """Token auth on /api/ (tickets for downloads), then the upload limit outside it."""

    @app.middleware("http")
    async def auth(request: Request, call_next: Callable) -> Any:
        path = request.url.path
        if token and path.startswith("/api/"):
            header = request.headers.get("authorization", "")
            ok = header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode())
            if not ok and request.method == "GET" and path.endswith(DOWNLOADS):
                q = request.query_params
                ok = tickets.valid(path, q.get("ticket", ""), q.get("expires", ""))
            if not ok:
                why = "missing" if not header else "wrong"
                return JSONResponse({"detail": f"authentication required: the Authorization header is {why}; send "
                                               "'Authorization: Bearer <token>' with the token the service was "
                                               "started with"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    app.add_middleware(UploadLimit, limit_bytes=limit_bytes, paths=("/api/datasets",))


class UploadLimit:
    """ASGI middleware: refuse request bodies over the limit on the upload endpoint with 413,
    by Content-Length up front or by counting the bytes as they arrive."""

    def __init__(self, app: Any, limit_bytes: int, paths: tuple[str, ...]) -> None:
        self.app = app
        self.limit = limit_bytes
        self.paths = paths

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        msg = (f"upload too large: the limit is {self.limit / 2**20:.0f} MB (start the service with "
               "--max-upload-mb to change it), or point at a server-side file instead")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit + 64 * 1024:
            await JSONResponse({"detail": msg}, status_code=413)(scope, receive, send)
            return
        seen = 0
        over = False

        async def counting_receive() -> dict:
            nonlocal seen, over
            m = await receive()
            if m["type"] == "http.request":
                seen += len(m.get("body", b""))
                if seen > self.limit + 64 * 1024:
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return m

        started = False

        async def guarded_send(m: dict) -> None:
            nonlocal started
            if over:
                if m["type"] == "http.response.start" and not started:
                    started = True
                    body = json.dumps({"detail": msg}).encode()
                    await send({"type": "http.response.start", "status": 413,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                return
            await send(m)

        await self.app(scope, counting_receive, guarded_send)
