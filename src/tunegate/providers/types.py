"""What the clients return: plain dicts, typed as ``TypedDict``.

One design serves both ways of reading a result: ``track['artists'][0]['name']`` works as in
the gateway design, and a type checker knows every key and its type. Dicts also go into the
cache and out of it unchanged (no model classes to rebuild, nothing to version twice).

- Spotify and MusicBrainz results keep the provider's own key names and nesting (the Web
  API's ``TrackObject``, MusicBrainz's hyphenated ``"artist-credit"``), trimmed to the
  fields declared here. They are ``total=False`` where the provider omits fields.
- Last.fm results are rebuilt into a clean shape, because the provider's JSON is converted
  XML (``#text``, ``@attr``, numbers as strings, one-element lists as bare objects).
  Every key is always present there; missing values are ``None`` or empty.
"""

from __future__ import annotations

from typing import Any, Required, TypedDict

__all__ = [
    "LastFmAlbumRef",
    "LastFmArtistInfo",
    "LastFmArtistRef",
    "LastFmCorrection",
    "LastFmImage",
    "LastFmTag",
    "LastFmTrackInfo",
    "LastFmTrackMatch",
    "LastFmWiki",
    "MusicBrainzArtist",
    "MusicBrainzArtistCredit",
    "MusicBrainzGenre",
    "MusicBrainzRecording",
    "MusicBrainzRelease",
    "MusicBrainzReleaseGroup",
    "MusicBrainzTag",
    "SpotifyAlbum",
    "SpotifyArtist",
    "SpotifyArtistRef",
    "SpotifyExternalIds",
    "SpotifyExternalUrls",
    "SpotifyFollowers",
    "SpotifyImage",
    "SpotifyRestrictions",
    "SpotifyTrack",
]


# --- Spotify (Web API object model; https://developer.spotify.com/documentation/web-api) -----


class SpotifyExternalUrls(TypedDict, total=False):
    spotify: str


class SpotifyExternalIds(TypedDict, total=False):
    """``external_ids``: removed for Development-Mode apps in Feb 2026, restored in March."""

    isrc: str
    ean: str
    upc: str


class SpotifyImage(TypedDict, total=False):
    url: Required[str]
    height: int | None
    width: int | None


class SpotifyRestrictions(TypedDict, total=False):
    reason: str


class SpotifyFollowers(TypedDict, total=False):
    href: str | None
    total: int


class SpotifyArtistRef(TypedDict, total=False):
    """A SimplifiedArtistObject, as credited on a track or an album."""

    id: Required[str]
    name: Required[str]
    type: str
    uri: str
    href: str
    external_urls: SpotifyExternalUrls


class SpotifyAlbum(TypedDict, total=False):
    """A SimplifiedAlbumObject (``available_markets`` dropped: deprecated and large)."""

    id: Required[str]
    name: Required[str]
    album_type: str
    total_tracks: int
    release_date: str
    release_date_precision: str
    images: list[SpotifyImage]
    artists: list[SpotifyArtistRef]
    restrictions: SpotifyRestrictions
    type: str
    uri: str
    href: str
    external_urls: SpotifyExternalUrls


class SpotifyTrack(TypedDict, total=False):
    """A TrackObject (``available_markets`` dropped: deprecated and large).

    ``popularity``, ``preview_url`` and ``linked_from`` are deprecated (Feb 2026) and absent
    for Development-Mode apps; ``is_playable`` comes only when a market was given.
    """

    id: Required[str]
    name: Required[str]
    artists: Required[list[SpotifyArtistRef]]
    album: SpotifyAlbum
    duration_ms: int
    explicit: bool
    disc_number: int
    track_number: int
    external_ids: SpotifyExternalIds
    external_urls: SpotifyExternalUrls
    href: str
    uri: str
    type: str
    is_local: bool
    is_playable: bool
    restrictions: SpotifyRestrictions
    linked_from: dict[str, Any]
    popularity: int
    preview_url: str | None


class SpotifyArtist(TypedDict, total=False):
    """An ArtistObject. ``genres``, ``popularity`` and ``followers`` are deprecated (Feb
    2026) and may be missing or empty for Development-Mode apps."""

    id: Required[str]
    name: Required[str]
    genres: list[str]
    images: list[SpotifyImage]
    popularity: int
    followers: SpotifyFollowers
    type: str
    uri: str
    href: str
    external_urls: SpotifyExternalUrls


# --- MusicBrainz (WS/2 JSON; hyphenated keys need the functional TypedDict form) ---------


class MusicBrainzTag(TypedDict):
    name: str
    count: int


class MusicBrainzGenre(TypedDict, total=False):
    id: str
    name: str
    count: int
    disambiguation: str


MusicBrainzArtist = TypedDict(
    "MusicBrainzArtist",
    {
        "id": Required[str],
        "name": Required[str],
        "sort-name": str,
        "disambiguation": str,
        "type": str | None,
        "country": str | None,
        "tags": list[MusicBrainzTag],
        "genres": list[MusicBrainzGenre],
    },
    total=False,
)


class MusicBrainzArtistCredit(TypedDict, total=False):
    name: Required[str]
    joinphrase: str
    artist: MusicBrainzArtist


MusicBrainzReleaseGroup = TypedDict(
    "MusicBrainzReleaseGroup",
    {
        "id": Required[str],
        "title": str,
        "primary-type": str | None,
        "secondary-types": list[str],
    },
    total=False,
)

MusicBrainzRelease = TypedDict(
    "MusicBrainzRelease",
    {
        "id": Required[str],
        "title": Required[str],
        "status": str | None,
        "date": str,
        "country": str | None,
        "disambiguation": str,
        "release-group": MusicBrainzReleaseGroup,
        "artist-credit": list[MusicBrainzArtistCredit],
        "track-count": int,
        "media": list[dict[str, Any]],
    },
    total=False,
)

MusicBrainzRecording = TypedDict(
    "MusicBrainzRecording",
    {
        "id": Required[str],
        "title": Required[str],
        "length": int | None,
        "disambiguation": str,
        "video": bool,
        "first-release-date": str,
        "artist-credit": list[MusicBrainzArtistCredit],
        "isrcs": list[str],
        "releases": list[MusicBrainzRelease],
        "tags": list[MusicBrainzTag],
        "genres": list[MusicBrainzGenre],
        "aliases": list[dict[str, Any]],
        "relations": list[dict[str, Any]],
        "rating": dict[str, Any],
        "annotation": str | None,
        # Search hits only: 0 to 100, 100 the best.
        "score": int,
    },
    total=False,
)
"""A recording as ``/ws/2/isrc``, ``/ws/2/recording`` (search) and ``/ws/2/recording/{mbid}``
return it; which keys are present depends on the ``inc`` list."""


# --- Last.fm (rebuilt; every key present) ------------------------------------------------


class LastFmImage(TypedDict):
    url: str
    size: str


class LastFmTag(TypedDict):
    """A top tag; ``count`` is Last.fm's weight, 0 to 100 (0 where the method gives none)."""

    name: str
    count: int
    url: str


class LastFmArtistRef(TypedDict):
    name: str
    mbid: str | None
    url: str | None


class LastFmAlbumRef(TypedDict):
    title: str
    artist: str
    mbid: str | None
    url: str | None
    position: int | None
    images: list[LastFmImage]


class LastFmWiki(TypedDict):
    published: str | None
    summary: str
    content: str


class LastFmTrackInfo(TypedDict):
    """``track.getInfo``: counts as ints, ``duration_ms`` None when Last.fm says 0."""

    name: str
    mbid: str | None
    url: str | None
    duration_ms: int | None
    listeners: int
    playcount: int
    artist: LastFmArtistRef
    album: LastFmAlbumRef | None
    tags: list[str]
    wiki: LastFmWiki | None


class LastFmArtistInfo(TypedDict):
    """``artist.getInfo``."""

    name: str
    mbid: str | None
    url: str | None
    listeners: int
    playcount: int
    on_tour: bool
    images: list[LastFmImage]
    tags: list[str]
    similar: list[str]
    bio: LastFmWiki | None


class LastFmCorrection(TypedDict):
    """``track.getCorrection``: the canonical artist and track names Last.fm knows."""

    artist: str
    track: str
    mbid: str | None
    artist_mbid: str | None
    url: str | None
    artist_corrected: bool
    track_corrected: bool


class LastFmTrackMatch(TypedDict):
    """One ``track.search`` hit."""

    name: str
    artist: str
    mbid: str | None
    url: str | None
    listeners: int
