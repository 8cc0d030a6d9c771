"""Last.fm API 2.0: track.getTopTags, track.getInfo, track.getCorrection, track.search,
artist.getTopTags, artist.getInfo and artist.getSimilar, over GET or POST (pylast posts
forms), in XML by default and in JSON with ``format=json``.

The JSON keeps Last.fm's XML-conversion quirks: ``@attr`` and ``#text`` keys, numbers as
strings (except tag counts), and a one-element list collapsed to a bare object. Errors are
``{"error": N, "message": ..., "links": []}`` (``<lfm status="failed"><error code="N">``),
with the HTTP status the real service uses for each (see docs/emulator.md).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote_plus

from aiohttp import web

from tunegate.emulator._http import Provider, Route, json_response, text, xml_element, xml_response
from tunegate.emulator.catalog import Artist, Catalog, Track
from tunegate.emulator.match import intersect, top_ranked, track_set
from tunegate.emulator.text import ascii_int, fold, strip_feat, tokens

__all__ = ["LastfmProvider"]

METHODS = {
    m.lower(): m
    for m in (
        "track.getTopTags",
        "track.getInfo",
        "track.getCorrection",
        "track.search",
        "artist.getTopTags",
        "artist.getInfo",
        "artist.getSimilar",
    )
}
MESSAGES = {
    3: "Invalid Method - No method with that name in this package",
    6: "Invalid parameters - Your request is missing a required parameter",
    8: "Operation failed - Most likely the backend service failed. Please try again.",
    10: "Invalid API key - You must be granted a valid key by last.fm",
    11: "Service Offline - This service is temporarily offline. Try again later.",
    16: "There was a temporary error processing your request. Please try again",
    26: "Suspended API key - Access for your account has been suspended, please contact Last.fm",
    29: "Rate Limit Exceeded - Your IP has made too many requests in a short period",
}
NO_ARTIST = "The artist you supplied could not be found"
NO_TRACK = "Track not found"
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
    "Access-Control-Max-Age": "86400",
}
_WEB = "https://www.last.fm"
_IMG = "https://lastfm.freetls.fastly.net/i/u"
_SIZES = (("small", "34s"), ("medium", "64s"), ("large", "174s"), ("extralarge", "300x300"))
PARAMS = web.RequestKey("lastfm_params", dict)  # the merged query and form parameters
# Injected HTTP failures, answered as Last.fm would label them.
_FAULT_CODES = {429: 29, 500: 8, 502: 16, 503: 11, 504: 16}


class LastfmProvider(Provider):
    name = "lastfm"

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/2.0/", self.call, "call"),
            Route("POST", "/2.0/", self.call, "call"),
            Route("GET", "/2.0", self.call, "call"),
            Route("POST", "/2.0", self.call, "call"),
        ]

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = {k.lower(): v for k, v in request.query.items()}
        if request.method == "POST" and request.can_read_body:
            form = await request.post()
            params.update({k.lower(): v for k, v in form.items() if isinstance(v, str)})
        return params

    async def endpoint_of(self, request: web.Request, endpoint: str) -> str:
        params = await self._params(request)
        request[PARAMS] = params
        return METHODS.get(params.get("method", "").lower(), "unknown")

    async def admit(
        self, request: web.Request, endpoint: str, now: float
    ) -> tuple[str, web.Response | None]:
        client = request.remote or "unknown"
        params: dict[str, str] = request[PARAMS]
        cfg = self.state.config
        request[ERRORS_AS_200] = cfg.lastfm_errors_as_200
        key = params.get("api_key", "")
        if key in cfg.lastfm_suspended_keys:
            return client, _failure(request, 26, 403)
        if key not in cfg.lastfm_api_keys:
            return client, _failure(request, 10, 403)
        if cfg.rate_limits and not self.state.limiter(self.name).check(client, now).allowed:
            self.state.stats.throttle(self.name, "rejected")  # with 200 too: no status shows it
            return client, _failure(request, 29, 429)
        return client, None

    def error(self, request: web.Request, status: int, *, retry_after: float = 1.0) -> web.Response:
        request[ERRORS_AS_200] = self.state.config.lastfm_errors_as_200
        code = _FAULT_CODES.get(status, 8 if status >= 500 else 6)
        headers = {"Retry-After": str(math.ceil(retry_after))} if status in (429, 503) else None
        return _failure(request, code, status, headers=headers)

    async def call(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, str] = request[PARAMS]
        method = METHODS.get(params.get("method", "").lower())
        if method is None:
            return _failure(request, 3, 400)
        cat = self.state.catalog
        loose = params.get("autocorrect", "0") == "1"
        if method.startswith("artist."):
            if not params.get("artist") and not params.get("mbid"):
                return _failure(request, 6, 400)
            a = _find_artist(cat, params, loose)
            if method == "artist.getSimilar":
                if a is None:  # lastfm-docs: this error comes with 200 OK
                    return _failure(request, 6, 200, NO_ARTIST)
                return _artist_similar(request, cat, a, params)
            if method == "artist.getTopTags":
                if a is None:
                    return _failure(request, 6, 200, NO_ARTIST)
                return _artist_top_tags(request, cat.artist(a))
            if a is None:
                return _failure(request, 6, 404, NO_ARTIST)
            return _artist_info(request, cat, a)
        if method == "track.search":
            if not params.get("track"):
                return _failure(request, 6, 400)
            return _track_search(request, cat, params)
        if not params.get("mbid") and not (params.get("artist") and params.get("track")):
            return _failure(request, 6, 400)
        if method == "track.getCorrection":
            return _correction(request, cat, params)
        i = _find_track(cat, params, loose)
        if method == "track.getTopTags":
            return _track_top_tags(request, cat, i, params)
        if i is None:
            return _failure(request, 6, 404, NO_TRACK)
        return _track_info(request, cat, i)


# ---------------------------------------------------------------------- lookups


def _find_track(cat: Catalog, params: dict[str, str], loose: bool) -> int | None:
    mbid = params.get("mbid", "").strip().lower()
    if mbid:
        i = cat.track_by_mbid(mbid) if len(mbid) == 36 else None
        if i is not None and cat.on_lastfm(i) and cat.track(i).lastfm_mbid == mbid:
            return i
        if not (params.get("artist") and params.get("track")):
            return None
    found = [
        i
        for i in cat.tracks_named(params.get("artist", ""), params.get("track", ""), loose=loose)
        if cat.on_lastfm(i)
    ]
    return found[0] if found else None


def _find_artist(cat: Catalog, params: dict[str, str], loose: bool) -> int | None:
    mbid = params.get("mbid", "").strip().lower()
    if mbid and len(mbid) == 36:
        a = cat.artist_by_mbid(mbid)
        if a is not None:
            return a
    found = cat.artists_named(params.get("artist", ""), loose=loose)
    return found[0] if found else None


# ---------------------------------------------------------------------- output helpers


def _wants_json(request: web.Request) -> bool:
    params: dict[str, str] = request.get(PARAMS, {})
    return params.get("format", "").lower() == "json"


ERRORS_AS_200 = web.RequestKey("lastfm_errors_as_200", bool)


def _failure(
    request: web.Request,
    code: int,
    status: int,
    message: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    message = message or MESSAGES[code]
    if request.get(ERRORS_AS_200):  # the real service sometimes sends its errors with 200
        status = 200
    all_headers = {**_CORS, **(headers or {})}
    if _wants_json(request):
        return json_response({"error": code, "message": message, "links": []}, status, all_headers)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<lfm status="failed">\n'
        f'  <error code="{code}">{text(message)}</error>\n</lfm>\n'
    )
    return xml_response(body, status, all_headers, content_type="text/xml")


def _ok(request: web.Request, data: dict[str, Any], xml: str) -> web.Response:
    if _wants_json(request):
        return json_response(data, 200, dict(_CORS))
    body = f'<?xml version="1.0" encoding="UTF-8" ?>\n<lfm status="ok">{xml}</lfm>\n'
    return xml_response(body, 200, dict(_CORS), content_type="text/xml")


def _collapse(items: list[Any]) -> Any:
    """Last.fm's XML-to-JSON conversion: one element is a bare object, not a list."""
    return items[0] if len(items) == 1 else items


def _artist_url(name: str) -> str:
    return f"{_WEB}/music/{quote_plus(name)}"


def _track_url(artist: str, title: str) -> str:
    return f"{_WEB}/music/{quote_plus(artist)}/_/{quote_plus(title)}"


def _tag_url(name: str) -> str:
    return f"{_WEB}/tag/{quote_plus(name)}"


def _images_json(hash_: str, extra: bool = False) -> list[dict[str, str]]:
    sizes = list(_SIZES) + ([("mega", "300x300"), ("", "300x300")] if extra else [])
    return [{"#text": f"{_IMG}/{px}/{hash_[:32]}.png", "size": size} for size, px in sizes]


def _images_xml(hash_: str) -> str:
    return "".join(
        xml_element("image", f"{_IMG}/{px}/{hash_[:32]}.png", size=size) for size, px in _SIZES
    )


def _names(cat: Catalog, track: Track) -> tuple[str, str]:
    return cat.artist(track.artists[0]).name, track.display_title


# ---------------------------------------------------------------------- methods


def _top_tags(
    request: web.Request, tags: tuple[tuple[str, int], ...], attrs: dict[str, str]
) -> web.Response:
    """``<toptags>`` with its ``@attr`` (artist, and track for a track's): one shape for
    ``track.getTopTags`` and ``artist.getTopTags``."""
    items = [{"count": c, "name": n, "url": _tag_url(n)} for n, c in tags]
    data = {"toptags": {"tag": _collapse(items), "@attr": attrs}}
    xml = xml_element(
        "toptags",
        "".join(
            xml_element(
                "tag",
                xml_element("count", str(c))
                + xml_element("name", text(n))
                + xml_element("url", text(_tag_url(n))),
            )
            for n, c in tags
        ),
        **attrs,
    )
    return _ok(request, data, xml)


def _track_top_tags(
    request: web.Request, cat: Catalog, i: int | None, params: dict[str, str]
) -> web.Response:
    tags: tuple[tuple[str, int], ...] = ()
    if i is None:  # an unknown track is not an error here: an empty list
        artist, title = params.get("artist", ""), params.get("track", "")
    else:
        track = cat.track(i)
        (artist, title), tags = _names(cat, track), track.tags
    return _top_tags(request, tags, {"artist": artist, "track": title})


def _artist_top_tags(request: web.Request, artist: Artist) -> web.Response:
    return _top_tags(request, artist.tags, {"artist": artist.name})


def _track_info(request: web.Request, cat: Catalog, i: int) -> web.Response:
    track = cat.track(i)
    artist_obj = cat.artist(track.artists[0])
    artist, title = _names(cat, track)
    album = track.album
    top5 = track.tags[:5]
    info: dict[str, Any] = {
        "name": title,
        "mbid": track.lastfm_mbid,
        "url": _track_url(artist, title),
        "duration": str(track.lastfm_duration),
        "streamable": {"#text": "0", "fulltrack": "0"},
        "listeners": str(track.listeners),
        "playcount": str(track.playcount),
        "artist": {"name": artist, "mbid": artist_obj.mbid, "url": _artist_url(artist)},
        "album": {
            "artist": artist,
            "title": album.name,
            "mbid": album.release_mbid,
            "url": f"{_artist_url(artist)}/{quote_plus(album.name)}",
            "image": _images_json(album.image_hash),
            "@attr": {"position": str(track.track_number)},
        },
        "toptags": {"tag": _collapse([{"name": n, "url": _tag_url(n)} for n, _ in top5])},
    }
    wiki = track.listeners % 3 == 0 or i < cat.n_real
    if wiki:
        summary = f'"{title}" is a song by {artist} from the album {album.name}.'
        info["wiki"] = {
            "published": "14 Apr 2009, 16:25",
            "summary": f'{summary} <a href="{info["url"]}">Read more on Last.fm</a>.',
            "content": f"{summary} User-contributed text is available under the Creative "
            "Commons By-SA License; additional terms may apply.",
        }
    xml_inner = (
        xml_element("name", text(title))
        + xml_element("mbid", track.lastfm_mbid)
        + xml_element("url", text(info["url"]))
        + xml_element("duration", str(track.lastfm_duration))
        + xml_element("streamable", "0", fulltrack="0")
        + xml_element("listeners", str(track.listeners))
        + xml_element("playcount", str(track.playcount))
        + xml_element(
            "artist",
            xml_element("name", text(artist))
            + xml_element("mbid", artist_obj.mbid)
            + xml_element("url", text(_artist_url(artist))),
        )
        + xml_element(
            "album",
            xml_element("artist", text(artist))
            + xml_element("title", text(album.name))
            + xml_element("mbid", album.release_mbid)
            + xml_element("url", text(info["album"]["url"]))
            + _images_xml(album.image_hash),
            position=track.track_number,
        )
        + xml_element(
            "toptags",
            "".join(
                xml_element(
                    "tag", xml_element("name", text(n)) + xml_element("url", text(_tag_url(n)))
                )
                for n, _ in top5
            ),
        )
    )
    if wiki:
        w = info["wiki"]
        xml_inner += xml_element(
            "wiki",
            xml_element("published", w["published"])
            + xml_element("summary", text(w["summary"]))
            + xml_element("content", text(w["content"])),
        )
    return _ok(request, {"track": info}, xml_element("track", xml_inner))


def _correction(request: web.Request, cat: Catalog, params: dict[str, str]) -> web.Response:
    artist_in, title_in = params.get("artist", ""), params.get("track", "")
    found = [i for i in cat.tracks_named(artist_in, title_in, loose=True) if cat.on_lastfm(i)]
    if not found:  # "mrbrownstone" -> "Mr. Brownstone": compare without spaces too
        squash = fold(strip_feat(title_in)).replace(" ", "")
        for a in cat.artists_named(artist_in, loose=True):
            found += [
                i
                for i in cat.tracks_of_artist(a)
                if cat.on_lastfm(i) and fold(cat.track(i).title).replace(" ", "") == squash
            ]
    if found:
        track = cat.track(found[0])
        artist, title = _names(cat, track)
        mbid, artist_mbid = track.lastfm_mbid, cat.artist(track.artists[0]).mbid
        turl, aurl = _track_url(artist, title), _artist_url(artist)
    else:
        artist, title, mbid, artist_mbid, turl, aurl = artist_in, title_in, "", "", "", ""
    attr = {
        "index": "0",
        "artistcorrected": "1" if artist != artist_in else "0",
        "trackcorrected": "1" if title != title_in else "0",
    }
    data = {
        "corrections": {
            "correction": {
                "track": {
                    "name": title,
                    "mbid": mbid,
                    "url": turl,
                    "artist": {"name": artist, "mbid": artist_mbid, "url": aurl},
                },
                "@attr": attr,
            }
        }
    }
    xml = xml_element(
        "corrections",
        xml_element(
            "correction",
            xml_element(
                "track",
                xml_element("name", text(title))
                + xml_element("url", text(turl))
                + xml_element(
                    "artist", xml_element("name", text(artist)) + xml_element("url", text(aurl))
                ),
            ),
            **attr,
        ),
    )
    return _ok(request, data, xml)


def _track_search(request: web.Request, cat: Catalog, params: dict[str, str]) -> web.Response:
    query = params.get("track", "")
    limit = _positive(params.get("limit"), 30, 1000)
    page = _positive(params.get("page"), 1, 10_000)
    sets = [track_set(cat, "title", t) for t in tokens(query)]
    sets += [track_set(cat, "artist", t) for t in tokens(params.get("artist", ""))]
    idx = cat.index()
    matches = (intersect(sets) or set()) - idx.off_lastfm
    start = (page - 1) * limit
    best = top_ranked(matches, start + limit, idx.listener_rank)[start:]
    items = []
    xml_items = []
    for i in best:
        track = cat.track(i)
        artist, title = _names(cat, track)
        url = _track_url(artist, title)
        items.append(
            {
                "name": title,
                "artist": artist,
                "url": url,
                "streamable": "FIXME",  # sic: the real track.search says this (lastfm-docs)
                "listeners": str(track.listeners),
                "image": _images_json(track.album.image_hash),
                "mbid": track.lastfm_mbid,
            }
        )
        xml_items.append(
            xml_element(
                "track",
                xml_element("name", text(title))
                + xml_element("artist", text(artist))
                + xml_element("url", text(url))
                + xml_element("streamable", "FIXME")
                + xml_element("listeners", str(track.listeners))
                + _images_xml(track.album.image_hash)
                + xml_element("mbid", track.lastfm_mbid),
            )
        )
    data = {
        "results": {
            "opensearch:Query": {"#text": "", "role": "request", "startPage": str(page)},
            "opensearch:totalResults": str(len(matches)),
            "opensearch:startIndex": str(start),
            "opensearch:itemsPerPage": str(limit),
            "trackmatches": {"track": _collapse(items)},
            "@attr": {},
        }
    }
    xml = (
        f'<results for={_attr(query)} xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
        f'<opensearch:Query role="request" searchTerms={_attr(query)} startPage="{page}"/>'
        f"<opensearch:totalResults>{len(matches)}</opensearch:totalResults>"
        f"<opensearch:startIndex>{start}</opensearch:startIndex>"
        f"<opensearch:itemsPerPage>{limit}</opensearch:itemsPerPage>"
        f"<trackmatches>{''.join(xml_items)}</trackmatches></results>"
    )
    return _ok(request, data, xml)


def _attr(value: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(value)


def _positive(value: str | None, default: int, cap: int) -> int:
    number = None if value is None else ascii_int(value.strip())
    if number is None:
        return default
    return max(1, min(number, cap))


def _artist_info(request: web.Request, cat: Catalog, a: int) -> web.Response:
    artist = cat.artist(a)
    similar_ids = [b % cat.n_artists for b in range(a + 1, a + 6) if b % cat.n_artists != a]
    similar = [cat.artist(b) for b in similar_ids]
    bio_text = f"{artist.name} is a {artist.kind.lower()} from {artist.country}."
    url = _artist_url(artist.name)
    info = {
        "name": artist.name,
        "mbid": artist.mbid,
        "url": url,
        "image": _images_json(artist.image_hash, extra=True),
        "streamable": "0",
        "ontour": "0",
        "stats": {"listeners": str(artist.listeners), "playcount": str(artist.playcount)},
        "similar": {
            "artist": _collapse(
                [
                    {
                        "name": s.name,
                        "url": _artist_url(s.name),
                        "image": _images_json(s.image_hash, extra=True),
                    }
                    for s in similar
                ]
            )
        },
        "tags": {"tag": _collapse([{"name": n, "url": _tag_url(n)} for n, _ in artist.tags[:5]])},
        "bio": {
            "links": {
                "link": {
                    "#text": "",
                    "rel": "original",
                    "href": f"https://last.fm/music/{quote_plus(artist.name)}/+wiki",
                }
            },
            "published": "04 Jan 2007, 05:16",
            "summary": f'{bio_text} <a href="{url}">Read more on Last.fm</a>',
            "content": f"{bio_text} User-contributed text is available under the Creative Commons "
            "By-SA License; additional terms may apply.",
        },
    }
    xml = xml_element(
        "artist",
        xml_element("name", text(artist.name))
        + xml_element("mbid", artist.mbid)
        + xml_element("url", text(url))
        + _images_xml(artist.image_hash)
        + xml_element("streamable", "0")
        + xml_element("ontour", "0")
        + xml_element(
            "stats",
            xml_element("listeners", str(artist.listeners))
            + xml_element("playcount", str(artist.playcount)),
        )
        + xml_element(
            "similar",
            "".join(
                xml_element(
                    "artist",
                    xml_element("name", text(s.name))
                    + xml_element("url", text(_artist_url(s.name))),
                )
                for s in similar
            ),
        )
        + xml_element(
            "tags",
            "".join(
                xml_element(
                    "tag", xml_element("name", text(n)) + xml_element("url", text(_tag_url(n)))
                )
                for n, _ in artist.tags[:5]
            ),
        )
        + xml_element(
            "bio",
            xml_element("published", "04 Jan 2007, 05:16")
            + xml_element("summary", text(info["bio"]["summary"]))  # type: ignore[index]
            + xml_element("content", text(info["bio"]["content"])),  # type: ignore[index]
        ),
    )
    return _ok(request, {"artist": info}, xml)


def _similar_ids(cat: Catalog, a: int, count: int) -> list[int]:
    """The artists similar to ``a``, nearest first (artist.getInfo shows the first five)."""
    out: list[int] = []
    for b in range(a + 1, a + 1 + min(count, cat.n_artists - 1)):
        if b % cat.n_artists != a:
            out.append(b % cat.n_artists)
    return out


def _match_text(rank: int, total: int) -> str:
    """Last.fm sends match as a string: "1" for the nearest, six decimals for the rest."""
    score = 1.0 if rank == 0 else 0.8 * (1.0 - rank / (total + 1)) ** 2
    return f"{score:.6f}".rstrip("0").rstrip(".")


def _artist_similar(
    request: web.Request, cat: Catalog, a: int, params: dict[str, str]
) -> web.Response:
    """artist.getSimilar, in the shape of lastfm-docs' example: ``similarartists.artist``
    with name, mbid, match (a string), url, six images, streamable; ``@attr.artist``."""
    artist = cat.artist(a)
    limit = _positive(params.get("limit"), 100, 1000)  # the docs' example returns 100
    similar = [cat.artist(b) for b in _similar_ids(cat, a, 100)][:limit]
    items = []
    xml_items = []
    for rank, s in enumerate(similar):
        match = _match_text(rank, len(similar))
        url = _artist_url(s.name)
        items.append(
            {
                "name": s.name,
                "mbid": s.mbid,
                "match": match,
                "url": url,
                "image": _images_json(s.image_hash, extra=True),
                "streamable": "0",
            }
        )
        xml_items.append(
            xml_element(
                "artist",
                xml_element("name", text(s.name))
                + xml_element("mbid", s.mbid)
                + xml_element("match", match)
                + xml_element("url", text(url))
                + _images_xml(s.image_hash)
                + xml_element("streamable", "0"),
            )
        )
    data = {"similarartists": {"artist": _collapse(items), "@attr": {"artist": artist.name}}}
    xml = xml_element("similarartists", "".join(xml_items), artist=artist.name)
    return _ok(request, data, xml)
