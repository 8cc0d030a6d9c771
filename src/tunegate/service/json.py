"""JSON answers encoded by orjson (cached values are dict and list subclasses it takes as
they are)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response

__all__ = ["JSONBody"]

_JSON = (b"content-type", b"application/json")


class JSONBody(Response):
    """``orjson.dumps(content)`` with its two headers built directly: ``Response``'s own
    ``init_headers`` rescans the given headers and formats the content type on every
    answer (a few us of a hit)."""

    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        if headers is not None:  # the general path, for answers that add their own
            super().__init__(content, status_code, headers, None, background)
            return
        self.status_code = status_code
        self.background = background
        self.body = body = orjson.dumps(content)
        self.raw_headers = [(b"content-length", str(len(body)).encode()), _JSON]

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
