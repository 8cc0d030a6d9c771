"""MusicBrainz web service v2: ISRC and recording lookups, recording and artist search, in
JSON (``fmt=json`` or ``Accept: application/json``) and in MMD-2 XML (the default, which
musicbrainzngs reads).

Gatekeeping follows the real service as observed (shared/research/music-apis.md, "Rate
limiting and User-Agent"): a missing User-Agent is refused with 403 and the "has not
identified itself" message; a generic one (a bare HTTP library's) with 503 and the "currently
busy" message, since generic agents share one small, saturated pool; more than the allowed
rate from one IP gets 503 with the rate-limit message, or (``musicbrainz_throttle``) an
answer held for a while, as the real one does since 2026; with ``musicbrainz_block`` an IP
sending more than 10 requests in 10 s gets that 503 for every call until it slows down;
every answer carries
``X-RateLimit-*`` headers. Search scores imitate Lucene: rarer words weigh
more, matching more clauses and shorter titles rank higher, the best hit scores 100.
"""

from __future__ import annotations

import heapq
import math
import re
import time
from collections.abc import Callable
from itertools import islice
from typing import Any, TypeVar

from aiohttp import web

from tunegate.emulator._http import (
    HOLD,
    Provider,
    Route,
    json_response,
    text,
    xml_element,
    xml_response,
)
from tunegate.emulator.catalog import Album, Catalog, Track, genre_mbid
from tunegate.emulator.ids import ISRC_RE
from tunegate.emulator.lucene import (
    And,
    Node,
    Not,
    Or,
    QuerySyntaxError,
    Range,
    Should,
    Term,
    parse,
)
from tunegate.emulator.match import track_set, tracks_in_years
from tunegate.emulator.text import ascii_int, fold, tokens

__all__ = ["MusicBrainzProvider"]

HELP = "For usage, please see: https://musicbrainz.org/development/mmd"
MSG_UA = (
    "Your requests are being throttled by MusicBrainz because the application you are using "
    "has not identified itself. Please update your application, and see "
    "https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting for more information."
)
MSG_RATE = (
    "Your requests are exceeding the allowable rate limit. Please see "
    "https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting for more information."
)
MSG_BUSY = "The MusicBrainz web server is currently busy. Please try again later."
_MBID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# inc tables not shared with providers/musicbrainz.py on purpose: one would hide a bug in both.
_RELS = {
    f"{e}-rels"
    for e in (
        "area",
        "artist",
        "event",
        "genre",
        "instrument",
        "label",
        "place",
        "recording",
        "release",
        "release-group",
        "series",
        "url",
        "work",
    )
}
INC_RECORDING = {
    "artists",
    "releases",
    "artist-credits",
    "puids",
    "isrcs",
    "aliases",
    "tags",
    "user-tags",
    "genres",
    "user-genres",
    "ratings",
    "user-ratings",
    "release-groups",
    "work-level-rels",
    "annotation",
    "media",
    "discids",
} | _RELS
INC_ISRC = {
    "artists",
    "releases",
    "puids",
    "isrcs",
    "artist-credits",
    "aliases",
    "tags",
    "user-tags",
    "ratings",
    "user-ratings",
} | _RELS
INC_ARTIST = {
    "recordings",
    "releases",
    "release-groups",
    "works",
    "aliases",
    "tags",
    "user-tags",
    "genres",
    "user-genres",
    "ratings",
    "user-ratings",
    "annotation",
    "media",
    "isrcs",
    "various-artists",
    "discids",
} | _RELS
# musicbrainz-server Controller/WS/2/Release.pm.
INC_RELEASE = {
    "artists",
    "artist-credits",
    "labels",
    "recordings",
    "release-groups",
    "media",
    "discids",
    "isrcs",
    "aliases",
    "tags",
    "user-tags",
    "genres",
    "user-genres",
    "collections",
    "user-collections",
    "annotation",
    "recording-level-rels",
    "work-level-rels",
} | _RELS
# Library names that say nothing about the application: MusicBrainz puts them in one pool of
# 50 requests/s shared by everyone (its Rate_Limiting page; python-musicbrainz is named
# there), which third-party probes find saturated (503 "currently busy"). Browsers
# ("Mozilla/5.0 ...") are not in it: real web apps' traffic carries them.
_GENERIC_AGENTS = {
    "curl",
    "wget",
    "python-requests",
    "python-httpx",
    "python-urllib",
    "aiohttp",
    "python",
    "go-http-client",
    "okhttp",
    "java",
    "libwww-perl",
    "node-fetch",
    "axios",
    "undici",
    "httpie",
    "lwp",
    "ruby",
    "guzzlehttp",
    "apache-httpclient",
    "dart",
    "reqwest",
    "postmanruntime",
    "insomnia",
    "musicbrainz-api",
    "python-musicbrainz",
    "php",
}
_GENERIC_POOL = 50  # requests/s the generic agents share (X-RateLimit-Limit of their refusal)
_TYPE_IDS = {
    "Person": "b6e035f4-3ce9-331c-97df-83397230b0df",
    "Group": "e431f5f6-b5d2-343d-8b36-72607fffb74b",
}
_STATUS_OFFICIAL = "4e304316-386d-3409-af2e-78857eec5cfe"
_RG_ALBUM = "f529b476-6e62-324f-b0aa-1f3e33d313fc"
_RG_SINGLE = "d6038452-8ee0-3f68-affc-2de9a1ede0b9"
_FORMAT_DIGITAL = "907a28d9-b3b2-3ef6-89a8-7b18d91d4794"  # medium format "Digital Media"
_XML_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<metadata xmlns="http://musicbrainz.org/ns/mmd-2.0#" '
    'xmlns:ext="http://musicbrainz.org/ns/ext#-2.0"'
)
RATE = web.RequestKey("mb_rate", tuple)  # (limit, remaining, reset epoch) for X-RateLimit-*
# Queries without an indexed term (NOT x, *) start from at most this many entities, and a
# field that is not indexed (tag:, dur:, country:, ...) tests at most _PREDICATE_TESTS of the
# candidates, in catalogue order: each test costs microseconds, and the event loop is shared.
_UNIVERSE_MAX = 100_000
_PREDICATE_TESTS = 1_000


def _is_generic(agent: str) -> bool:
    product = agent.strip().split("/", 1)[0].split(" ", 1)[0].strip().lower()
    return product in _GENERIC_AGENTS


class MusicBrainzProvider(Provider):
    name = "musicbrainz"

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/ws/2/isrc/{isrc}", self.isrc, "isrc"),
            Route("GET", "/ws/2/recording", self.recording_search, "recording.search"),
            Route("GET", "/ws/2/recording/", self.recording_search, "recording.search"),
            Route("GET", "/ws/2/recording/{mbid}", self.recording, "recording"),
            Route("GET", "/ws/2/artist", self.artist_search, "artist.search"),
            Route("GET", "/ws/2/artist/", self.artist_search, "artist.search"),
            Route("GET", "/ws/2/artist/{mbid}", self.artist, "artist"),
            Route("GET", "/ws/2/release/{mbid}", self.release, "release"),
            Route("*", "/ws/2/{tail:.*}", self.unknown, "unknown"),
        ]

    # ------------------------------------------------------------------ gatekeeping
    async def admit(
        self, request: web.Request, endpoint: str, now: float
    ) -> tuple[str, web.Response | None]:
        client = request.remote or "unknown"
        agent = request.headers.get("User-Agent", "")
        if not agent.strip():
            return client, _error(request, 403, MSG_UA)
        if _is_generic(agent):
            request[RATE] = (_GENERIC_POOL, 0, int(self.state.clock.time()) + 1)
            # Retry-After 0, as probes of the real shed report: waiting does not help.
            return client, _error(request, 503, MSG_BUSY, {"Retry-After": "0"})
        cfg = self.state.config
        if not cfg.rate_limits:
            return client, None
        stats = self.state.stats
        if cfg.musicbrainz_block:
            blocked_for, started = self.state.blocker(self.name).check(client, now)
            if blocked_for > 0:
                stats.throttle(self.name, "blocks", int(started))
                stats.throttle(self.name, "blocked")
                limit = cfg.musicbrainz_block_rate.requests
                request[RATE] = (limit, 0, int(self.state.clock.time() + blocked_for) + 1)
                retry = str(max(1, math.ceil(blocked_for)))
                return client, _error(request, 503, MSG_RATE, {"Retry-After": retry})
        decision = self.state.limiter(self.name).check(client, now)
        reset = int(self.state.clock.time() + max(decision.reset_after, 0.0)) + 1
        request[RATE] = (decision.limit, decision.remaining, reset)
        if decision.allowed:
            return client, None
        if cfg.musicbrainz_throttle != "reject" and cfg.musicbrainz_throttle_delay > 0:
            request[HOLD] = cfg.musicbrainz_throttle_delay
            stats.throttle(self.name, "delayed")
            stats.throttle(self.name, "delay_seconds", cfg.musicbrainz_throttle_delay)
            if cfg.musicbrainz_throttle == "delay":
                return client, None  # served after the hold, outside the quota
        stats.throttle(self.name, "rejected")
        return client, _error(request, 503, MSG_RATE, {"Retry-After": str(decision.retry_after)})

    def error(self, request: web.Request, status: int, *, retry_after: float = 1.0) -> web.Response:
        message = {
            404: "Not Found",
            429: MSG_RATE,
            503: MSG_BUSY,
        }.get(status, "Internal server error" if status >= 500 else "Bad request")
        headers = {"Retry-After": str(math.ceil(retry_after))} if status in (429, 503) else None
        return _error(request, status, message, headers)

    # ------------------------------------------------------------------ lookups
    async def isrc(self, request: web.Request) -> web.StreamResponse:
        cat = self.state.catalog
        looked = _lookup(
            request,
            "isrc",
            INC_ISRC,
            "isrc",
            lambda code: [i for i in cat.tracks_by_isrc(code) if cat.on_musicbrainz(i)] or None,
        )
        if isinstance(looked, web.Response):
            return looked
        incs, found = looked
        code = request.match_info["isrc"]
        incs.discard("releases")  # ignored on /isrc: releases only for a top-level recording
        if _wants_json(request):
            recs = [_recording_json(cat, i, incs, toplevel=False) for i in found]
            return _ok(request, {"isrc": code.upper(), "recordings": recs})
        inner = "".join(_recording_xml(cat, i, incs) for i in found)
        body = xml_element(
            "isrc", xml_element("recording-list", inner, count=len(found)), id=code.upper()
        )
        return _ok_xml(request, body)

    async def recording(self, request: web.Request) -> web.StreamResponse:
        cat = self.state.catalog
        looked = _lookup(request, "recording", INC_RECORDING, "mbid", cat.track_by_mbid)
        if isinstance(looked, web.Response):
            return looked
        incs, i = looked
        if _wants_json(request):
            return _ok(request, _recording_json(cat, i, incs, toplevel=True))
        return _ok_xml(request, _recording_xml(cat, i, incs, toplevel=True))

    async def artist(self, request: web.Request) -> web.StreamResponse:
        cat = self.state.catalog
        looked = _lookup(request, "artist", INC_ARTIST, "mbid", cat.artist_by_mbid)
        if isinstance(looked, web.Response):
            return looked
        incs, a = looked
        if _wants_json(request):
            return _ok(request, _artist_json(cat, a, incs))
        return _ok_xml(request, _artist_xml(cat, a, incs))

    async def release(self, request: web.Request) -> web.StreamResponse:
        """``/ws/2/release/{mbid}``, JSON only (tunegate asks for nothing else); the shape
        of musicbrainz-server's t/.../WS/2/JSON/LookupRelease.pm."""
        cat = self.state.catalog
        looked = _lookup(request, "release", INC_RELEASE, "mbid", cat.release_by_mbid)
        if isinstance(looked, web.Response):
            return looked
        incs, found = looked
        if not _wants_json(request):
            return _error(request, 400, "The emulator serves release lookups as JSON only.")
        return _ok(request, _release_lookup_json(cat, *found, incs))

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        return _error(request, 400, "Invalid resource.")

    # ------------------------------------------------------------------ search
    async def recording_search(self, request: web.Request) -> web.StreamResponse:
        parsed = _search_params(request)
        if isinstance(parsed, web.Response):
            return parsed
        node, limit, offset = parsed
        cat = self.state.catalog
        scores = _Search(cat, _recording_field, _recording_range, cat.size).run(node)
        absent = cat.index().off_musicbrainz
        hits = [(s, i) for i, s in scores.items() if s > 0 and i not in absent]
        page, best = _page(hits, offset, limit)
        if _wants_json(request):
            return _ok(
                request,
                {
                    "created": _created(),
                    "count": len(hits),
                    "offset": offset,
                    "recordings": [_search_hit_json(cat, i, _pct(s, best)) for s, i in page],
                },
            )
        inner = "".join(
            _recording_xml(cat, i, set(), score=_pct(s, best), search=True) for s, i in page
        )
        return _ok_xml(
            request,
            xml_element("recording-list", inner, count=len(hits), offset=offset),
            created=_created(),
        )

    async def artist_search(self, request: web.Request) -> web.StreamResponse:
        parsed = _search_params(request)
        if isinstance(parsed, web.Response):
            return parsed
        node, limit, offset = parsed
        cat = self.state.catalog
        scores = _Search(cat, _artist_field, _artist_range, cat.n_artists).run(node)
        hits = [(s, a) for a, s in scores.items() if s > 0]
        page, best = _page(hits, offset, limit)
        if _wants_json(request):
            artists = []
            for s, a in page:
                entry = _artist_json(cat, a, {"tags", "aliases"})
                artists.append(
                    {
                        "id": entry.pop("id"),
                        "type": entry.pop("type"),
                        "type-id": entry.pop("type-id"),
                        "score": _pct(s, best),
                        **entry,
                    }
                )
            body = {"created": _created(), "count": len(hits), "offset": offset, "artists": artists}
            return _ok(request, body)
        inner = "".join(_artist_xml(cat, a, {"tags"}, score=_pct(s, best)) for s, a in page)
        return _ok_xml(
            request,
            xml_element("artist-list", inner, count=len(hits), offset=offset),
            created=_created(),
        )


# ---------------------------------------------------------------------- request helpers


def _wants_json(request: web.Request) -> bool:
    fmt = request.query.get("fmt")
    if fmt is not None:
        return fmt == "json"
    return "application/json" in request.headers.get("Accept", "")


def _rate_headers(request: web.Request) -> dict[str, str]:
    rate = request.get(RATE)
    if rate is None:
        return {}
    limit, remaining, reset = rate
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset),
    }


def _error(
    request: web.Request, status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {**_rate_headers(request), **(headers or {})}
    if _wants_json(request):
        return json_response({"error": message, "help": HELP}, status, all_headers)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<error><text>{text(message)}</text><text>{text(HELP)}</text></error>"
    )
    return xml_response(body, status, all_headers)


def _ok(request: web.Request, data: Any) -> web.Response:
    return json_response(data, 200, _rate_headers(request))


def _ok_xml(request: web.Request, inner: str, *, created: str | None = None) -> web.Response:
    attr = f' created="{created}"' if created else ""
    body = f"{_XML_HEAD}{attr}>{inner}</metadata>"
    return xml_response(body, 200, _rate_headers(request))


_T = TypeVar("_T")
# What each lookup id must look like before the catalogue is asked (else 400 "Invalid ...").
_ID_FORMS: dict[str, Callable[[str], object]] = {
    "isrc": lambda code: ISRC_RE.match(code.upper()),
    "mbid": _MBID.match,
}


def _lookup(
    request: web.Request,
    resource: str,
    allowed: set[str],
    param: str,
    find: Callable[[str], _T | None],
) -> tuple[set[str], _T] | web.Response:
    """A lookup's prologue, in musicbrainz-server's order: a bad ``inc`` (400), then a
    malformed id (400 ``Invalid {param}.``), then an unknown one (404)."""
    incs, bad = _incs(request, allowed, resource)
    if bad is not None:
        return bad
    key = request.match_info[param]
    if not _ID_FORMS[param](key):
        return _error(request, 400, f"Invalid {param}.")
    found = find(key)
    if found is None:
        return _error(request, 404, "Not Found")
    return incs, found


def _incs(
    request: web.Request, allowed: set[str], resource: str
) -> tuple[set[str], web.Response | None]:
    raw = request.query.get("inc", "")
    incs = {p for p in re.split(r"[+\s]+", raw) if p}
    for inc in sorted(incs):
        if inc not in allowed:
            msg = f"{inc} is not a valid inc parameter for the {resource} resource."
            return incs, _error(request, 400, msg)
    return incs, None


def _search_params(request: web.Request) -> tuple[Node, int, int] | web.Response:
    q = request.query
    query = q.get("query", "")
    limit, offset = ascii_int(q.get("limit", "25")), ascii_int(q.get("offset", "0"))
    if limit is None or limit < 1:
        return _error(request, 400, "Invalid limit parameter.")
    if offset is None:
        return _error(request, 400, "Invalid offset parameter.")
    try:
        node = parse(query) if query.strip() else None
    except QuerySyntaxError:
        node = None
    if node is None:
        return _error(request, 400, "Invalid search query.")
    return node, min(limit, 100), offset


def _page(
    hits: list[tuple[float, int]], offset: int, limit: int
) -> tuple[list[tuple[float, int]], float]:
    """The page of hits (best score first, then catalogue order) and the best score."""
    best = max(hits)[0] if hits else 1.0
    ranked = heapq.nsmallest(offset + limit, hits, key=lambda h: (-h[0], h[1]))
    return ranked[offset:], best


def _pct(score: float, best: float) -> int:
    return max(1, round(100 * score / best)) if best > 0 else 0


def _created() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


# ---------------------------------------------------------------------- search engine

Scores = dict[int, float]
Predicate = Callable[[int], bool]
FieldResolver = Callable[[Catalog, str, str, bool], "Scores | Predicate | None"]
RangeResolver = Callable[[Catalog, str, str, str], "Scores | Predicate | None"]


class _Search:
    """Evaluates a Lucene tree over one kind of entity with idf-weighted scores."""

    def __init__(
        self, cat: Catalog, field: FieldResolver, ranges: RangeResolver, universe: int
    ) -> None:
        self.cat = cat
        self.field = field
        self.ranges = ranges
        self.universe = universe

    def run(self, node: Node) -> Scores:
        return self.eval(node, None)

    def eval(self, node: Node, within: Scores | None) -> Scores:
        if isinstance(node, Term | Range):
            return self.leaf(node, within)
        if isinstance(node, Or):
            total: Scores = {}
            hits: dict[int, int] = {}
            for child in node.children:
                for i, s in self.eval(child, within).items():
                    total[i] = total.get(i, 0.0) + s
                    hits[i] = hits.get(i, 0) + 1
            n = len(node.children)
            return {i: s * hits[i] / n for i, s in total.items()}  # Lucene's coord factor
        if isinstance(node, And):
            filters = [c for c in node.children if not isinstance(c, Not | Should)]
            filters.sort(key=lambda c: isinstance(c, Range) or self._is_predicate(c))
            current = within
            for child in filters:
                found = self.eval(child, current)
                current = (
                    found
                    if current is None
                    else {i: current[i] + s for i, s in found.items() if i in current}
                )
                if not current:
                    return {}
            if current is None:
                current = self.everything()
            for child in node.children:
                if isinstance(child, Not):
                    for i in self.eval(child.child, current):
                        current.pop(i, None)
                elif isinstance(child, Should):
                    for i, s in self.eval(child.child, current).items():
                        current[i] += s
            return current
        if isinstance(node, Not):
            base = self.everything() if within is None else dict(within)
            for i in self.eval(node.child, base):
                base.pop(i, None)
            return base
        return self.eval(node.child, within)  # Should outside an And: an ordinary clause

    def _is_predicate(self, node: Node) -> bool:
        return isinstance(node, Term) and callable(
            self.field(self.cat, node.field or "", "", False)
        )

    def everything(self) -> Scores:
        return dict.fromkeys(range(min(self.universe, _UNIVERSE_MAX)), 0.01)

    def leaf(self, node: Term | Range, within: Scores | None) -> Scores:
        name = (node.field or "").lower()
        found: Scores | Predicate | None
        if isinstance(node, Range):
            found = self.ranges(self.cat, name, node.low, node.high)
        elif node.text.strip("*?") == "":
            return dict(within) if within is not None else self.everything()
        else:
            found = self.field(self.cat, name, node.text, node.phrase)
        if found is None:
            return {}
        if callable(found):
            return self.apply(found, within, 0.3)
        if within is not None:
            return {i: s for i, s in found.items() if i in within}
        return found

    def apply(self, pred: Predicate, within: Scores | None, weight: float) -> Scores:
        domain = within if within is not None else range(min(self.universe, _UNIVERSE_MAX))
        return {i: weight for i in islice(domain, _PREDICATE_TESTS) if pred(i)}


def _idf(universe: int, df: int) -> float:
    return 1.0 + math.log(universe / (df + 1) + 1)


def _weighted(cat: Catalog, sets: list[set[int]], weight: float, universe: int) -> Scores:
    """All ``sets`` must hold (AND of the words of one term or phrase); idf-weighted sum."""
    if not sets:
        return {}
    sets.sort(key=len)
    common = set(sets[0])
    for s in sets[1:]:
        common &= s
    score = weight * sum(_idf(universe, len(s)) for s in sets)
    return dict.fromkeys(common, score)


def _recording_field(
    cat: Catalog, name: str, value: str, phrase: bool
) -> Scores | Predicate | None:
    if name in ("", "recording", "recordingaccent", "title"):
        if not value:
            return None
        words = tokens(value)
        found = _weighted(cat, [track_set(cat, "title", w) for w in words], 1.0, cat.size)
        lengths = cat.index().title_len
        for i in found:  # Lucene's length norm: shorter titles first; the exact title best
            n = lengths[i]
            exact = n == len(words) and cat.title_tokens(i) == words
            found[i] *= (1.5 if exact else 1.0) / math.sqrt(max(1, n))
        return found
    if name in ("artist", "artistname", "creditname"):
        if not value:
            return None
        return _weighted(cat, [track_set(cat, "artist", w) for w in tokens(value)], 0.8, cat.size)
    if name in ("release", "releaseaccent"):
        if not value:
            return None
        return _weighted(cat, [track_set(cat, "album", w) for w in tokens(value)], 0.6, cat.size)
    if name == "isrc":
        if not value:
            return None
        return dict.fromkeys(cat.tracks_by_isrc(value.strip()), 3.0)
    if name in ("rid", "mbid"):
        rec = cat.track_by_mbid(value.strip()) if _MBID.match(value.strip()) else None
        return {} if rec is None else {rec: 3.0}
    if name == "arid":
        a = cat.artist_by_mbid(value.strip()) if _MBID.match(value.strip()) else None
        return {} if a is None else dict.fromkeys(cat.tracks_of_artist(a), 2.0)
    if not value:  # asked only whether the field is a predicate
        return (lambda i: False) if name in _RECORDING_PREDICATES else None
    make = _RECORDING_PREDICATES.get(name)
    return None if make is None else make(cat, value)


def _tag_pred(cat: Catalog, value: str) -> Predicate:
    want = fold(value)
    return lambda i: cat.may_have_tag(i, want) and any(fold(t) == want for t in cat.mb_tag_names(i))


def _date_field(cat: Catalog, value: str) -> Scores | Predicate:
    want = value.strip()[:10]
    year = ascii_int(want)
    if year is not None and len(want) == 4:  # a whole year: the index has it
        return dict.fromkeys(tracks_in_years(cat, year, year), 0.3)
    return lambda i: cat.track_album(i).release_date.startswith(want)


def _int_field(get: Callable[[Catalog, int], int]) -> Callable[[Catalog, str], Predicate | None]:
    def make(cat: Catalog, value: str) -> Predicate | None:
        want = ascii_int(value.strip())
        if want is None:
            return None
        return lambda i: get(cat, i) == want

    return make


_RECORDING_PREDICATES: dict[str, Callable[[Catalog, str], Scores | Predicate | None]] = {
    "tag": _tag_pred,
    "date": _date_field,
    "firstreleasedate": _date_field,
    "dur": _int_field(Catalog.mb_length),
    "tnum": _int_field(Catalog.track_number),
    "number": _int_field(Catalog.track_number),
    "video": lambda cat, v: lambda i: v.lower() == "false",
    "status": lambda cat, v: lambda i: v.lower() == "official",
    "country": lambda cat, v: lambda i: cat.track_album(i).country.lower() == v.lower(),
    "primarytype": lambda cat, v: lambda i: cat.track_album(i).album_type == v.lower(),
}


def _bounds(low: str, high: str) -> tuple[float, float] | None:
    try:
        return (-math.inf if low == "*" else float(low), math.inf if high == "*" else float(high))
    except ValueError:
        return None


def _year_bound(value: str, open_end: int) -> int | None:
    return open_end if value == "*" else ascii_int(value) if len(value) == 4 else None


def _recording_range(cat: Catalog, name: str, low: str, high: str) -> Scores | Predicate | None:
    if name in ("dur", "qdur", "tnum", "number"):
        bounds = _bounds(low, high)
        if bounds is None:
            return None
        lo, hi = bounds
        if name == "qdur":  # MusicBrainz's quantised duration: 2-second steps
            lo, hi = lo * 2000, hi * 2000 + 1999
        get = Catalog.mb_length if name in ("dur", "qdur") else Catalog.track_number
        return lambda i: lo <= get(cat, i) <= hi
    if name in ("date", "firstreleasedate"):
        first, last = _year_bound(low, 0), _year_bound(high, 9999)
        if first is not None and last is not None:  # whole years: the index has them
            return dict.fromkeys(tracks_in_years(cat, first, last), 0.3)
        return lambda i: (
            (low == "*" or cat.track_album(i).release_date >= low)
            and (high == "*" or cat.track_album(i).release_date[: len(high)] <= high)
        )
    return None


def _artist_range(cat: Catalog, name: str, low: str, high: str) -> Scores | Predicate | None:
    bounds = _bounds(low, high) if name == "begin" else None
    if bounds is None:
        return None
    lo, hi = bounds
    return lambda a: lo <= cat.artist(a).begin_year <= hi


def _artist_field(cat: Catalog, name: str, value: str, phrase: bool) -> Scores | Predicate | None:
    idx = cat.index()
    if name in ("", "artist", "artistaccent", "alias", "name", "sortname"):
        if not value:
            return None
        words = list(tokens(value))
        sets = [set(idx.artist.get(w, ())) for w in words]
        found = _weighted(cat, sets, 1.0, cat.n_artists)
        named = set(idx.artist_name.get(" ".join(words), ()))
        lengths = idx.artist_name_len
        for a in found:
            found[a] *= (1.5 if a in named else 1.0) / math.sqrt(max(1, lengths[a]))
        return found
    if name in ("arid", "mbid"):
        found_artist = cat.artist_by_mbid(value.strip()) if _MBID.match(value.strip()) else None
        return {} if found_artist is None else {found_artist: 3.0}
    preds: dict[str, Callable[[int], bool]] = {
        "country": lambda a: cat.artist(a).country.lower() == value.lower(),
        "type": lambda a: cat.artist(a).kind.lower() == value.lower(),
        "tag": lambda a: any(fold(t) == fold(value) for t, _ in cat.artist(a).tags),
        "begin": lambda a: str(cat.artist(a).begin_year).startswith(value.strip()),
    }
    if not value:
        return (lambda a: False) if name in preds else None
    return preds.get(name)


# ---------------------------------------------------------------------- JSON


def _artist_credit_json(cat: Catalog, track: Track, incs: set[str]) -> list[dict[str, Any]]:
    out = []
    for a, join in zip(track.artists, track.joinphrases, strict=True):
        artist = cat.artist(a)
        entry: dict[str, Any] = {
            "id": artist.mbid,
            "name": artist.name,
            "sort-name": artist.sort_name,
            "disambiguation": artist.disambiguation,
            "type": artist.kind,
            "type-id": _TYPE_IDS[artist.kind],
            "country": artist.country,
        }
        if "tags" in incs:
            entry["tags"] = [
                {"count": 1 + c // 25, "name": n.casefold()} for n, c in artist.tags[:4]
            ]
        if "genres" in incs:
            entry["genres"] = _genres_json([n for n, _ in artist.tags[:2]], 1)
        out.append({"name": artist.name, "joinphrase": join, "artist": entry})
    return out


def _genres_json(names: list[str], count: int) -> list[dict[str, Any]]:
    return [
        {"id": genre_mbid(n), "name": n.casefold(), "disambiguation": "", "count": count}
        for n in names
    ]


def _release_json(cat: Catalog, track: Track, *, search: bool = False) -> dict[str, Any]:
    album = track.album
    single = album.album_type == "single"
    rg: dict[str, Any] = {
        "id": album.release_group_mbid,
        "type-id": _RG_SINGLE if single else _RG_ALBUM,
        "primary-type-id": _RG_SINGLE if single else _RG_ALBUM,
        "title": album.name.removesuffix(" (Deluxe Edition)"),
        "primary-type": "Single" if single else "Album",
        "secondary-types": [],
    }
    release: dict[str, Any] = {
        "id": album.release_mbid,
        "status-id": _STATUS_OFFICIAL,
        "title": album.name,
        "status": "Official",
        "release-group": rg,
        "date": album.release_date,
        "country": album.country,
        "release-events": [{"date": album.release_date, "area": _area_json(album.country)}],
        "track-count": album.total_tracks,
        "media": [
            {
                "position": 1,
                "format": "Digital Media",
                "track": [
                    {
                        "id": cat.mb_track_id(track.index),
                        "number": str(track.track_number),
                        "title": track.title,
                        "length": track.mb_length,
                    }
                ],
                "track-count": album.total_tracks,
                "track-offset": track.track_number - 1,
            }
        ],
    }
    if search:
        release["count"] = 1
    else:
        release["disambiguation"] = ""
        release["quality"] = "normal"
    return release


def _area_json(country: str) -> dict[str, Any]:
    return {
        "id": genre_mbid("area:" + country),
        "type": "Country",
        "type-id": "06dd0ae4-8c74-30bb-b43d-95dcedf961de",
        "name": country,
        "sort-name": country,
        "iso-3166-1-codes": [country],
        "life-span": {"ended": None},
    }


def _recording_json(cat: Catalog, i: int, incs: set[str], *, toplevel: bool) -> dict[str, Any]:
    track = cat.track(i)
    assert track.mbid is not None
    rec: dict[str, Any] = {
        "id": track.mbid,
        "title": track.title,
        "length": track.mb_length,
        "disambiguation": "",
        "video": False,
        "first-release-date": track.album.release_date,
    }
    if incs & {"artist-credits", "artists"}:
        rec["artist-credit"] = _artist_credit_json(cat, track, incs)
    if "isrcs" in incs:
        rec["isrcs"] = [track.isrc]
    if "tags" in incs:
        rec["tags"] = [{"count": c, "name": n} for n, c in track.mb_tags]
    if "genres" in incs:
        counts = dict(track.mb_tags)
        rec["genres"] = [
            g | {"count": counts.get(g["name"], 1)} for g in _genres_json(list(track.mb_genres), 1)
        ]
    if "aliases" in incs:
        rec["aliases"] = []
    if incs & _RELS:
        rec["relations"] = []
    if "annotation" in incs:
        rec["annotation"] = None
    if "ratings" in incs:
        rec["rating"] = {"votes-count": 0, "value": None}
    if toplevel and "releases" in incs:
        rec["releases"] = [_release_json(cat, track)]
    return rec


def _search_hit_json(cat: Catalog, i: int, score: int) -> dict[str, Any]:
    track = cat.track(i)
    return {
        "id": track.mbid,
        "score": score,
        "title": track.title,
        "length": track.mb_length,
        "video": None,
        "artist-credit": _artist_credit_json(cat, track, set()),
        "first-release-date": track.album.release_date,
        "releases": [_release_json(cat, track, search=True)],
        "isrcs": [track.isrc],
        "tags": [{"count": c, "name": n} for n, c in track.mb_tags],
    }


def _artist_json(cat: Catalog, a: int, incs: set[str]) -> dict[str, Any]:
    artist = cat.artist(a)
    entry: dict[str, Any] = {
        "id": artist.mbid,
        "type": artist.kind,
        "type-id": _TYPE_IDS[artist.kind],
        "name": artist.name,
        "sort-name": artist.sort_name,
        "country": artist.country,
        "area": _area_json(artist.country),
        "disambiguation": artist.disambiguation,
        "isnis": [],
        "life-span": {"begin": str(artist.begin_year), "end": None, "ended": False},
    }
    if "aliases" in incs:
        entry["aliases"] = []
    if "tags" in incs:
        entry["tags"] = [{"count": 1 + c // 25, "name": n.casefold()} for n, c in artist.tags]
    if "genres" in incs:
        entry["genres"] = _genres_json([n for n, _ in artist.tags[:2]], 1)
    return entry


# ---------------------------------------------------------------------- XML (MMD-2)


def _artist_credit_xml(cat: Catalog, track: Track) -> str:
    parts = []
    for a, join in zip(track.artists, track.joinphrases, strict=True):
        artist = cat.artist(a)
        inner = xml_element("name", text(artist.name)) + xml_element(
            "sort-name", text(artist.sort_name)
        )
        if artist.disambiguation:
            inner += xml_element("disambiguation", text(artist.disambiguation))
        el = xml_element(
            "artist", inner, id=artist.mbid, type=artist.kind, type_id=_TYPE_IDS[artist.kind]
        )
        parts.append(xml_element("name-credit", el, joinphrase=join or None))
    return xml_element("artist-credit", "".join(parts))


def _recording_xml(
    cat: Catalog,
    i: int,
    incs: set[str],
    *,
    toplevel: bool = False,
    score: int | None = None,
    search: bool = False,
) -> str:
    track = cat.track(i)
    inner = xml_element("title", text(track.title)) + xml_element("length", str(track.mb_length))
    inner += xml_element("first-release-date", track.album.release_date)
    if search or incs & {"artist-credits", "artists"}:
        inner += _artist_credit_xml(cat, track)
    if (search or toplevel) and (search or "releases" in incs):
        inner += xml_element("release-list", _release_xml(cat, track), count=1)
    if "isrcs" in incs or search:
        inner += xml_element("isrc-list", xml_element("isrc", None, id=track.isrc), count=1)
    if "tags" in incs or search:
        tags = "".join(
            xml_element("tag", xml_element("name", text(n)), count=c) for n, c in track.mb_tags
        )
        inner += xml_element("tag-list", tags)
    if "genres" in incs:
        counts = dict(track.mb_tags)
        genres = "".join(
            xml_element(
                "genre", xml_element("name", text(n)), count=counts.get(n, 1), id=genre_mbid(n)
            )
            for n in track.mb_genres
        )
        inner += xml_element("genre-list", genres)
    return xml_element("recording", inner, id=track.mbid, ext__score=score)


def _release_xml(cat: Catalog, track: Track) -> str:
    album = track.album
    rg_type = "Single" if album.album_type == "single" else "Album"
    medium = (
        xml_element("position", "1")
        + xml_element("format", "Digital Media")
        + xml_element(
            "track-list",
            xml_element(
                "track",
                xml_element("number", str(track.track_number))
                + xml_element("title", text(track.title))
                + xml_element("length", str(track.mb_length)),
                id=cat.mb_track_id(track.index),
            ),
            offset=track.track_number - 1,
            count=album.total_tracks,
        )
    )
    inner = (
        xml_element("title", text(album.name))
        + xml_element("status", "Official", id=_STATUS_OFFICIAL)
        + xml_element(
            "release-group",
            xml_element("title", text(album.name)),
            id=album.release_group_mbid,
            type=rg_type,
        )
        + xml_element("date", album.release_date)
        + xml_element("country", album.country)
        + xml_element(
            "medium-list",
            xml_element("track-count", str(album.total_tracks)) + xml_element("medium", medium),
            count=1,
        )
    )
    return xml_element("release", inner, id=album.release_mbid)


def _artist_xml(cat: Catalog, a: int, incs: set[str], *, score: int | None = None) -> str:
    artist = cat.artist(a)
    inner = (
        xml_element("name", text(artist.name))
        + xml_element("sort-name", text(artist.sort_name))
        + xml_element("country", artist.country)
    )
    if artist.disambiguation:
        inner += xml_element("disambiguation", text(artist.disambiguation))
    inner += xml_element("life-span", xml_element("begin", str(artist.begin_year)))
    if "tags" in incs:
        tags = "".join(
            xml_element("tag", xml_element("name", text(n.casefold())), count=1 + c // 25)
            for n, c in artist.tags
        )
        inner += xml_element("tag-list", tags)
    return xml_element(
        "artist",
        inner,
        id=artist.mbid,
        type=artist.kind,
        type_id=_TYPE_IDS[artist.kind],
        ext__score=score,
    )


def _release_lookup_json(
    cat: Catalog, album: Album, tracks: list[int], incs: set[str]
) -> dict[str, Any]:
    """A top-level release: the fields every lookup has, then what each inc adds."""
    first = cat.track(tracks[0])
    base = _release_json(cat, first)
    release: dict[str, Any] = {
        "id": album.release_mbid,
        "title": album.name,
        "status": "Official",
        "status-id": _STATUS_OFFICIAL,
        "quality": "normal",
        "disambiguation": "",
        "packaging": None,
        "packaging-id": None,
        "text-representation": {"language": "eng", "script": "Latn"},
        "cover-art-archive": {
            "artwork": False,
            "count": 0,
            "front": False,
            "back": False,
            "darkened": False,
        },
        "date": album.release_date,
        "country": album.country,
        "release-events": base["release-events"],
        "barcode": None,
        "asin": None,
    }
    if incs & {"artist-credits", "artists"}:
        release["artist-credit"] = _artist_credit_json(cat, first, incs)[:1]
    if "release-groups" in incs:
        release["release-group"] = base["release-group"]
    if "labels" in incs:
        release["label-info"] = []
    if "tags" in incs:
        release["tags"] = []
    if "genres" in incs:
        release["genres"] = []
    if "annotation" in incs:
        release["annotation"] = None
    if incs & _RELS:
        release["relations"] = []
    if incs & {"recordings", "media", "discids"}:
        medium: dict[str, Any] = {
            "position": 1,
            "title": "",
            "format": "Digital Media",
            "format-id": _FORMAT_DIGITAL,
            "track-count": len(tracks),
        }
        if "recordings" in incs:
            medium["track-offset"] = 0
            medium["tracks"] = [_medium_track_json(cat, i, incs) for i in tracks]
        if "discids" in incs:
            medium["discs"] = []
        release["media"] = [medium]
    return release


def _medium_track_json(cat: Catalog, i: int, incs: set[str]) -> dict[str, Any]:
    track = cat.track(i)
    recording = _recording_json(
        cat, i, incs & {"artist-credits", "artists", "isrcs"}, toplevel=False
    )
    recording.pop("first-release-date", None)  # not on a release's own recordings
    entry: dict[str, Any] = {
        "id": cat.mb_track_id(i),
        "number": str(track.track_number),
        "position": track.track_number,
        "title": track.title,
        "length": track.mb_length,
        "recording": recording,
    }
    if incs & {"artist-credits", "artists"}:
        entry["artist-credit"] = recording.get("artist-credit", [])
    return entry
