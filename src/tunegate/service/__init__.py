"""``tunegate serve``: the gateway as an HTTP service (typed JSON API over the public async
clients). See docs/service.md."""

from __future__ import annotations

from tunegate.service.app import ServiceOptions, create_app, serve

__all__ = ["ServiceOptions", "create_app", "serve"]
