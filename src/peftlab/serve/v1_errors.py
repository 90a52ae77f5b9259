"""Every refusal on the OpenAI-compatible `/v1` paths in OpenAI's error shape,
`{"error": {"message", "type", "param", "code"}}`, whatever raised it: a body that is not UTF-8,
not JSON or not a request (400, `param` naming the parameter at fault, as `messages[0].role`),
an unknown route (404), a wrong method (405), an error no handler expected (500). The rest of
the API keeps FastAPI's `{"detail"}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

V1 = "/v1/"
ROUTES = "/v1/models, /v1/models/{model}, /v1/chat/completions and /v1/completions"
# OpenAI's error type for each status (its clients map the status to an exception class)
TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
         429: "requests"}
# pydantic's tags for the member of a union that failed (`stop.str`, `content.list[...]`): not parameters
_TAG = re.compile(r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|.*[(\[].*|[A-Z]\w*)$")


def is_v1(request: Request) -> bool:
    return request.url.path.startswith(V1) or request.url.path == V1.rstrip("/")


def error(status: int, message: str, type: str | None = None, param: str | None = None,  # noqa: A002
          code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    if type is None:
        type = TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")  # noqa: A001
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}},
                        status_code=status, headers=headers)


def param_of(loc: tuple | list) -> str | None:
    """pydantic's location of an error as a parameter path: ("body", "messages", 0, "role") ->
    "messages[0].role"; union member tags are left out."""
    out = ""
    for p in loc:
        if p == "body" and not out:
            continue
        if isinstance(p, int):
            out += f"[{p}]"
        elif not _TAG.match(str(p)):
            out += f".{p}" if out else str(p)
    return out or None


def _json_problem(body: bytes) -> tuple[str, str | None]:
    """Why a body is not a JSON object, in words with its place."""
    if not body.strip():
        return "The request body is empty: send a JSON object, e.g. {\"model\": ..., \"messages\": [...]}", None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        return (f"The request body is not valid UTF-8 (byte 0x{body[e.start]:02x} at position {e.start}): "
                "send the JSON body encoded as UTF-8"), None
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return (f"The request body is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno} "
                f"(character {e.pos})"), None
    return "The request body is not a JSON object: send {\"model\": ..., ...}", None


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A body that does not parse: 400 in OpenAI's shape on /v1 (the first problem, its parameter
    named), FastAPI's 422 elsewhere."""
    assert isinstance(exc, RequestValidationError)
    if not is_v1(request):
        return await request_validation_exception_handler(request, exc)
    errors = exc.errors()
    first = errors[0] if errors else {}
    kind = first.get("type")
    loc = tuple(first.get("loc", ()))
    if kind == "json_invalid" or (loc == ("body",) and kind in ("missing", "model_attributes_type", "dict_type")):
        message, param = _json_problem(await request.body())
        return error(400, message, param=param)
    param = param_of(loc)
    if kind == "extra_forbidden":
        return error(400, f"Unrecognized request argument supplied: {param}", param=param)
    if kind == "missing":
        return error(400, f"Missing required parameter: '{param}'", param=param, code="missing_required_parameter")
    return error(400, f"Invalid value for '{param or 'the body'}': {first.get('msg', 'invalid request')}",
                 param=param, code="invalid_value")


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """A route or method refused by the router (404, 405) or an HTTPException: OpenAI's shape on /v1."""
    assert isinstance(exc, StarletteHTTPException)
    if not is_v1(request):
        return await http_exception_handler(request, exc)
    what = f"{request.method} {request.url.path}"
    if exc.status_code == 404 and exc.detail == "Not Found":
        return error(404, f"Invalid URL ({what}): this server answers {ROUTES}", code="unknown_url")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("allow") or (exc.headers or {}).get("Allow")
        hint = f": use {allowed}" if allowed else ""
        return error(405, f"Method not allowed ({what}){hint}", code="method_not_allowed", headers=exc.headers)
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return error(exc.status_code, detail, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Any:
    """An error no handler expected: 500, in OpenAI's shape on /v1 (elsewhere Starlette's)."""
    if not is_v1(request):
        return PlainTextResponse("Internal Server Error", status_code=500)
    return error(500, f"The server had an error while processing your request ({type(exc).__name__}: {exc})")
