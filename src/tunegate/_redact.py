"""Keeping secrets out of text tunegate did not write.

Two sources: foreign exception messages (aiohttp puts the request URL, query string and all,
into several of its errors, with the query values percent-encoded) and provider messages a
classification hook copied into an error. :func:`redact` strips the query string from every
URL in the text, then replaces each secret in every form it may take there: raw,
percent-encoded as a path or a query value, and form-encoded (space as ``+``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "redact", "strip_queries", "variants"]

REDACTED = "***"

# scheme://anything-but-space-quote-or-angle ? query (up to a space, quote, angle or #)
_URL_QUERY = re.compile(r"(?P<base>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s?#'\"<>]*)\?[^\s#'\"<>]*")
# What RFC 3986 lets a query value keep unencoded; yarl (aiohttp) encodes the rest.
_QUERY_SAFE = "/?:@!$'()*,~"


def strip_queries(text: str) -> str:
    """``text`` with the query string of every URL in it replaced by ``***``."""
    return _URL_QUERY.sub(r"\g<base>?" + REDACTED, text)


def variants(secret: str) -> set[str]:
    """The forms ``secret`` may take in foreign text, itself included."""
    forms = {secret}
    for safe in ("", "/", _QUERY_SAFE):
        forms.add(quote(secret, safe=safe))
        forms.add(quote_plus(secret, safe=safe))
    return {f for f in forms if f}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` without URL query strings and without any form of any of ``secrets``."""
    out = strip_queries(text)
    forms = {f for s in secrets if s for f in variants(s)}
    for form in sorted(forms, key=len, reverse=True):  # longest first: no half-replaced form
        out = out.replace(form, REDACTED)
    return out
