"""What stands between a request and the routers: the allowed hosts, same-origin writes, token
auth, signed download tickets, and limits on request bodies.

- Hosts: only the names the service is reached by (`Settings.allowed_hosts`: 127.0.0.1,
  localhost and ::1 by default) are answered, so a page on another domain that rebinds its name
  to 127.0.0.1 (DNS rebinding) gets 400, not the API (Starlette's TrustedHostMiddleware).
- Writes (POST, PUT, PATCH, DELETE) from a browser must come from the service's own pages: a
  foreign `Origin`, or `Sec-Fetch-Site` other than same-origin/none, is refused with 403, so
  a page the user opens elsewhere cannot upload data or retry runs (cross-site request
  forgery). Clients that are not browsers send neither header and are not affected.
- Bodies: uploads up to --max-upload-mb; every other request body up to MAX_BODY_BYTES (a
  60 MB JSON body used to be parsed in full).

With a token (--token or PEFTLAB_TOKEN) every /api and /v1 call needs `Authorization: Bearer <token>`
(refusals on /v1 in OpenAI's error shape);
a browser link cannot set a header, so a download (a GET of a .zip or .html under /api/) may
instead carry a ticket from POST /api/tickets: an HMAC of the path and its expiry, signed
with a secret made at start (it dies with the process), valid TICKET_SECONDS. Bodies over the
upload limit are refused with 413 by Content-Length, or while they arrive.
"""

from __future__ import annotations

import hashlib
import hmac
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


MAX_BODY_BYTES = 2 * 2**20
PROTECTED = ("/api/", "/v1/")  # with a token, every call under these needs it


def refusal(path: str, status: int, message: str, type: str, code: str | None = None,  # noqa: A002
            headers: dict[str, str] | None = None) -> JSONResponse:
    """A refused request: OpenAI's error shape on the OpenAI-compatible /v1 paths, {"detail"} elsewhere."""
    if path.startswith("/v1/"):
        body: dict[str, Any] = {"error": {"message": message, "type": type, "param": None, "code": code}}
    else:
        body = {"detail": message}
    return JSONResponse(body, status_code=status, headers=headers)
WRITES = ("POST", "PUT", "PATCH", "DELETE")
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def foreign_write(request: Request) -> str | None:
    """Why a state-changing browser request does not come from the service's own pages, or None."""
    if request.method not in WRITES:
        return None
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {site}"
    origin = request.headers.get("origin")
    if origin is not None:
        from urllib.parse import urlsplit

        o = urlsplit(origin)
        if origin == "null" or (o.netloc or "").lower() != request.headers.get("host", "").lower():
            return f"Origin {origin}"
    return None


def install(app: FastAPI, token: str | None, tickets: Tickets, limit_bytes: int,
            allowed_hosts: list[str] | None = None) -> None:
    """Same-origin writes and token auth, then the body limits, then the allowed hosts (outermost).
    All pure ASGI: Starlette's BaseHTTPMiddleware (`@app.middleware("http")`) hides a client's
    disconnect from the routes, and /v1 stops the generation of a client that went away."""

    def auth(request: Request) -> Any:
        """The refusal of a request, or None."""
        why = foreign_write(request)
        path = request.url.path
        if why is not None:
            return refusal(path, 403, f"cross-site request refused ({why}): change things through this service's own "
                                      "pages, or from a client that is not a browser", "permission_error")
        if token and path.startswith(PROTECTED):
            header = request.headers.get("authorization", "")
            ok = header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode())
            if not ok and request.method == "GET" and path.endswith(DOWNLOADS):
                q = request.query_params
                ok = tickets.valid(path, q.get("ticket", ""), q.get("expires", ""))
            if not ok:
                why = "missing" if not header else "wrong"
                return refusal(path, 401, f"authentication required: the Authorization header is {why}; send "
                                          "'Authorization: Bearer <token>' with the token the service was started "
                                          "with (an OpenAI client: api_key=<token>)", "authentication_error",
                               "invalid_api_key", {"WWW-Authenticate": "Bearer"})
        return None

    app.add_middleware(Guard, refuse=auth)
    app.add_middleware(BodyLimit, default_bytes=MAX_BODY_BYTES, limits={"/api/datasets": limit_bytes})
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOOPBACK_HOSTS)


class Guard:
    """ASGI middleware: a request that `refuse` answers (a Response) gets that answer; the others go on."""

    def __init__(self, app: Any, refuse: Callable[[Request], Any]) -> None:
        self.app, self.refuse = app, refuse

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] == "http":
            response = self.refuse(Request(scope))
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: refuse request bodies over their limit with 413 (an upload path's own
    limit, else `default_bytes`), by Content-Length up front or by counting the bytes as they
    arrive, before anything parses them."""

    def __init__(self, app: Any, default_bytes: int, limits: dict[str, int]) -> None:
        self.app = app
        self.default = default_bytes
        self.limits = limits

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        upload = scope["path"] in self.limits
        limit = self.limits.get(scope["path"], self.default)
        msg = (f"upload too large: the limit is {limit / 2**20:.0f} MB (start the service with --max-upload-mb "
               "to change it), or point at a server-side file instead" if upload else
               f"request body too large: the limit is {limit / 2**20:.0f} MB for this kind of request")
        slack = 64 * 1024 if upload else 0  # multipart framing around an upload
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit + slack:
            await refusal(scope["path"], 413, msg, "invalid_request_error")(scope, receive, send)
            return
        seen = 0
        over = False

        async def counting_receive() -> dict:
            nonlocal seen, over
            m = await receive()
            if m["type"] == "http.request":
                seen += len(m.get("body", b""))
                if seen > limit + slack:
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return m

        started = False

        async def guarded_send(m: dict) -> None:
            nonlocal started
            if over:
                if m["type"] == "http.response.start" and not started:
                    started = True
                    body = bytes(refusal(scope["path"], 413, msg, "invalid_request_error").body)
                    await send({"type": "http.response.start", "status": 413,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                return
            await send(m)

        await self.app(scope, counting_receive, guarded_send)
