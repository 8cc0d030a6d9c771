"""The provider layer without I/O: everything about Spotify, MusicBrainz and Last.fm that
needs no network, so that the client classes stay thin.

- :mod:`~tunegate.providers.validate`: input and settings checks, before any call.
- :mod:`~tunegate.providers.spotify`, :mod:`~tunegate.providers.musicbrainz`,
  :mod:`~tunegate.providers.lastfm`: request builders returning :class:`ApiRequest`,
  parsers, result choosers, and ``classify_response(status, body, headers)``, the one
  hook a pipeline needs to turn an answer into ``None`` (usable) or a typed error.
- :mod:`~tunegate.providers.types`: the ``TypedDict`` results.
- :mod:`~tunegate.providers.matching`: normalisation and similarity for ranking hits.

A client method is then: build the request (validation happens there), run it through the
pipeline (cache, breaker, limiter, HTTP, retry) with the provider's ``classify_response``,
and parse the body. The rules are written down in ``docs/providers.md``.
"""

from __future__ import annotations

from tunegate.providers._request import ApiRequest, Pairs, Provider

__all__ = ["ApiRequest", "Pairs", "Provider"]
