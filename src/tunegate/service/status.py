"""The status page (``/status`` and ``/``): one static page, no external assets
(``static/status.html``), that reads ``/status.json`` every second and shows per provider
the breaker state, tokens, rate, pause, cache hit ratio and calls, the request rate and
the recent errors."""

from __future__ import annotations

from importlib import resources

__all__ = ["STATUS_HTML"]

STATUS_HTML = (resources.files("tunegate.service") / "static" / "status.html").read_text("utf-8")
