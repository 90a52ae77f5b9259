"""What a request to the engine can be refused with (the playground, predictions and `/v1` alike)."""

from __future__ import annotations

from peftlab.errors import PeftlabError


class ServeError(PeftlabError):
    """A request the engine refuses: HTTP status, OpenAI error type, the parameter at fault (and
    HTTP headers to send, such as Retry-After)."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field name
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code, self.type, self.headers = status, param, code, type, headers
