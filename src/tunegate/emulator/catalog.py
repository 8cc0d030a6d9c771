"""The deterministic catalogue the three providers serve, derived lazily from (index, seed).

Layout: the hand-picked real tracks (``_realtracks``) come first, then synthetic tracks. A
synthetic track ``i`` belongs to artist ``s // 20`` and album ``s // 10`` (``s`` its position
among synthetic tracks), so an artist has two albums of ten tracks. Every property is a pure
function of (seed, index): nothing is stored per track except the search index, which holds
only integers (about 16 bytes per track), so a million tracks fit comfortably.

The same track has the same ISRC, title and artists at every provider it exists at; the
details differ the way they do in reality: Spotify and Last.fm put "(feat. X)" in the title
while MusicBrainz credits X with a join phrase, MusicBrainz lengths are a few hundred ms off
Spotify's, Last.fm durations are whole seconds (or "0" when unknown). Some tracks exist at
only one or two providers; some ISRCs are shared by two recordings (a track reissued on a
deluxe edition).
"""

from __future__ import annotations

import threading
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from tunegate.emulator import _words as W
from tunegate.emulator._realtracks import REAL_ARTISTS, REAL_TRACKS
from tunegate.emulator.ids import ISRC_RE, Codec
from tunegate.emulator.text import fold, strip_feat, tokens

__all__ = ["Album", "Artist", "Catalog", "Track", "get_catalog"]

TRACKS_PER_ALBUM = 10
TRACKS_PER_ARTIST = 20

# Hash domains: one per kind of id or property, so no two derive from the same bits.
_D_TRACK, _D_ARTIST, _D_ALBUM, _D_REC, _D_MBARTIST, _D_RELEASE, _D_RG = 1, 2, 3, 4, 5, 6, 7
_D_TRACKH, _D_TRACKH2, _D_ARTISTH, _D_ALBUMH, _D_DUP, _D_IMG, _D_MBTRACK = 8, 9, 10, 11, 12, 13, 14

_GENRE_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")  # uuid5 URL namespace


@dataclass(frozen=True, slots=True)
class Artist:
    index: int
    name: str
    sort_name: str
    kind: str  # "Person" | "Group"
    country: str
    disambiguation: str
    spotify_id: str
    mbid: str
    genres: tuple[str, ...]  # Spotify's artist genres
    popularity: int
    followers: int
    begin_year: int
    listeners: int
    playcount: int
    tags: tuple[tuple[str, int], ...]  # Last.fm artist top tags, count 0..100
    image_hash: str


@dataclass(frozen=True, slots=True)
class Album:
    key: int  # album index, or a value past the album range for deluxe reissues
    name: str
    artist: int
    spotify_id: str
    release_mbid: str
    release_group_mbid: str
    release_date: str  # "YYYY" or "YYYY-MM-DD"
    album_type: str
    total_tracks: int
    country: str
    image_hash: str

    @property
    def year(self) -> int:
        return int(self.release_date[:4])

    @property
    def date_precision(self) -> str:
        return "day" if len(self.release_date) == 10 else "year"


@dataclass(frozen=True, slots=True)
class Track:
    index: int
    title: str  # the MusicBrainz form, without "(feat. ...)"
    display_title: str  # Spotify / Last.fm form, with "(feat. ...)" when there is a guest
    artists: tuple[int, ...]  # artist indexes, primary first
    joinphrases: tuple[str, ...]  # MusicBrainz join phrase after each credited artist
    album: Album
    track_number: int
    duration_ms: int  # Spotify
    mb_length: int  # MusicBrainz
    lastfm_duration: int  # Last.fm (whole seconds in ms, 0 when unknown)
    explicit: bool
    popularity: int
    isrc: str
    spotify_id: str | None  # None: not on Spotify
    mbid: str | None  # None: not on MusicBrainz
    on_lastfm: bool
    lastfm_mbid: str
    listeners: int
    playcount: int
    tags: tuple[tuple[str, int], ...]  # Last.fm top tags, count 0..100, best first
    mb_tags: tuple[tuple[str, int], ...]  # MusicBrainz folksonomy tags (small vote counts)
    mb_genres: tuple[str, ...]  # the subset of mb_tags that MusicBrainz knows as genres


def genre_mbid(name: str) -> str:
    """A stable MBID for a genre name (synthetic: real genre MBIDs are not known here)."""
    return str(uuid.uuid5(_GENRE_NS, "genre:" + name.casefold()))


_ALL_GENRES = frozenset(g for family in W.GENRE_FAMILIES for g in family) | {
    "big beat",
    "disco",
    "new wave",
    "post-rock",
    "trip-hop",
    "nu metal",
    "grunge",
    "blue-eyed soul",
    "hip-hop",
    "rnb",
    "post-grunge",
    "synthpop",
}


class _Index:
    """Token -> sorted indexes, for titles, artist names and album names."""

    def __init__(self) -> None:
        self.title: dict[str, array[int]] = {}
        self.artist: dict[str, array[int]] = {}
        self.album: dict[str, array[int]] = {}
        self.featured: dict[int, list[int]] = {}  # guest artist -> its guest appearances


def _add(table: dict[str, array[int]], token: str, index: int) -> None:
    bucket = table.get(token)
    if bucket is None:
        bucket = table[token] = array("I")
    bucket.append(index)


class Catalog:
    """Every track, artist and album of one (size, seed), computed on demand."""

    def __init__(self, size: int = 10_000, seed: int = 0) -> None:
        if size < 1:
            raise ValueError("catalog size must be at least 1")
        self.seed = seed
        self.codec = Codec(seed)
        self.n_real = len(REAL_TRACKS)
        self.size = max(size, self.n_real)
        self.n_synth = self.size - self.n_real
        self.n_real_artists = len(REAL_ARTISTS)
        self.n_artists = self.n_real_artists + -(-self.n_synth // TRACKS_PER_ARTIST)
        self._real_albums: list[tuple[str, str]] = []  # (artist name, album name)
        self._real_album_tracks: dict[int, list[int]] = {}
        self._real_artist_tracks: dict[int, list[int]] = {}
        self._artist_by_name = {a.name: n for n, a in enumerate(REAL_ARTISTS)}
        for i, rt in enumerate(REAL_TRACKS):
            key = (rt.credits[0][0], rt.album)
            if key not in self._real_albums:
                self._real_albums.append(key)
            self._real_album_tracks.setdefault(self._real_albums.index(key), []).append(i)
            for name, _ in rt.credits:
                self._real_artist_tracks.setdefault(self._artist_by_name[name], []).append(i)
        self.n_real_albums = len(self._real_albums)
        self.n_albums = self.n_real_albums + -(-self.n_synth // TRACKS_PER_ALBUM)
        self._real_track_sid = {t.spotify_id: i for i, t in enumerate(REAL_TRACKS) if t.spotify_id}
        self._real_track_mbid = {t.mbid: i for i, t in enumerate(REAL_TRACKS) if t.mbid}
        self._real_artist_sid = {
            a.spotify_id: n for n, a in enumerate(REAL_ARTISTS) if a.spotify_id
        }
        self._real_artist_mbid = {a.mbid: n for n, a in enumerate(REAL_ARTISTS) if a.mbid}
        self._real_isrc: dict[str, list[int]] = {}
        for i in range(self.n_real):
            self._real_isrc.setdefault(self._real_track_isrc(i), []).append(i)
        self._index: _Index | None = None
        self._index_lock = threading.Lock()
        self._title_word_tokens = [tokens(w) for w in W.TITLE_WORDS]
        self._suffix_tokens = [tokens(s) for s in W.TITLE_SUFFIXES]
        self.track = lru_cache(maxsize=8192)(self._make_track)
        self.artist = lru_cache(maxsize=4096)(self._make_artist)
        self.album = lru_cache(maxsize=4096)(self._make_album)

    # ---------------------------------------------------------------------- lookups by id
    def track_by_spotify_id(self, sid: str) -> int | None:
        if sid in self._real_track_sid:
            return self._real_track_sid[sid]
        i = self.codec.spotify_index(_D_TRACK, sid)
        if i is None or i >= self.size or (i < self.n_real and REAL_TRACKS[i].spotify_id):
            return None
        return i if self.track(i).spotify_id == sid else None

    def artist_by_spotify_id(self, sid: str) -> int | None:
        if sid in self._real_artist_sid:
            return self._real_artist_sid[sid]
        a = self.codec.spotify_index(_D_ARTIST, sid)
        if a is None or a >= self.n_artists:
            return None
        return a if self.artist(a).spotify_id == sid else None

    def track_by_mbid(self, mbid: str) -> int | None:
        mbid = mbid.lower()
        if mbid in self._real_track_mbid:
            return self._real_track_mbid[mbid]
        i = self.codec.mbid_index(_D_REC, mbid)
        if i is None or i >= self.size:
            return None
        return i if self.track(i).mbid == mbid else None

    def artist_by_mbid(self, mbid: str) -> int | None:
        mbid = mbid.lower()
        if mbid in self._real_artist_mbid:
            return self._real_artist_mbid[mbid]
        a = self.codec.mbid_index(_D_MBARTIST, mbid)
        if a is None or a >= self.n_artists:
            return None
        return a if self.artist(a).mbid == mbid else None

    def tracks_by_isrc(self, isrc: str) -> list[int]:
        """Every track (at any provider) with this ISRC; two for a reissued recording."""
        isrc = isrc.upper()
        if isrc in self._real_isrc:
            return list(self._real_isrc[isrc])
        if not ISRC_RE.match(isrc) or self.n_synth == 0:
            return []
        i = self.codec.isrc_index(isrc)
        if not self.n_real <= i < self.size or self._is_dup(i) or self.track(i).isrc != isrc:
            return []
        found = [i]
        if i + 1 < self.size and self._is_dup(i + 1):
            found.append(i + 1)
        return found

    # ------------------------------------------------------------------- structure
    def tracks_of_artist(self, a: int) -> list[int]:
        if a < self.n_real_artists:
            return list(self._real_artist_tracks.get(a, []))
        s0 = self.n_real + (a - self.n_real_artists) * TRACKS_PER_ARTIST
        own = list(range(s0, min(s0 + TRACKS_PER_ARTIST, self.size)))
        return own + self.index().featured.get(a, [])

    def tracks_of_album(self, al: int) -> list[int]:
        if al < self.n_real_albums:
            return list(self._real_album_tracks.get(al, []))
        s0 = self.n_real + (al - self.n_real_albums) * TRACKS_PER_ALBUM
        return list(range(s0, min(s0 + TRACKS_PER_ALBUM, self.size)))

    def album_index_of(self, i: int) -> int:
        if i < self.n_real:
            rt = REAL_TRACKS[i]
            return self._real_albums.index((rt.credits[0][0], rt.album))
        return self.n_real_albums + (i - self.n_real) // TRACKS_PER_ALBUM

    def popularity(self, i: int) -> int:
        """Spotify popularity without building the track (used to rank big result sets)."""
        if i < self.n_real:
            return 60 + (self.codec.hash(_D_TRACKH2, i) % 30)
        u = (self.codec.hash(_D_TRACKH2, i) >> 20) % 1000 / 1000
        return int(95 * u**2.2)

    def _presence(self, i: int) -> int:
        return (self.codec.hash(_D_TRACKH2, i - 1 if self._is_dup(i) else i) >> 20) % 100

    def on_spotify(self, i: int) -> bool:
        """Cheap presence test (no track built): most tracks are everywhere, some are not."""
        return i < self.n_real or self._presence(i) not in (2, 3, 10)

    def on_musicbrainz(self, i: int) -> bool:
        return i < self.n_real or self._presence(i) not in (0, 1, 3, 7, 8, 9)

    def on_lastfm(self, i: int) -> bool:
        if i < self.n_real:
            return self.track(i).on_lastfm
        return not self._is_dup(i) and self._presence(i) not in (0, 1, 2, 4, 5, 6)

    # ------------------------------------------------------------------- name matching
    def index(self) -> _Index:
        """The search index, built on first use (about 1 s per million tracks)."""
        if self._index is None:
            with self._index_lock:
                if self._index is None:
                    self._index = self._build_index()
        return self._index

    def title_tokens(self, i: int) -> list[str]:
        """The folded words of a track's title (without "feat." guests)."""
        if i < self.n_real:
            return tokens(REAL_TRACKS[i].title)
        words, suffix = self._title_parts(i)
        out = [t for w in words for t in self._title_word_tokens[w]]
        if suffix >= 0:
            out += self._suffix_tokens[suffix]
        return out

    def artists_named(self, name: str, *, loose: bool = False) -> list[int]:
        """Artists whose name equals ``name`` ignoring case (``loose``: also accents,
        punctuation and a leading "The")."""
        want = _loose(name) if loose else name.casefold()
        toks = tokens(name)
        if not toks:
            return []
        idx = self.index()
        candidates: set[int] | None = None
        for t in toks:
            if loose and t == "the":
                continue
            found = set(idx.artist.get(t, ()))
            candidates = found if candidates is None else candidates & found
        out = []
        for a in sorted(candidates or ()):
            have = self.artist(a).name
            if (_loose(have) if loose else have.casefold()) == want:
                out.append(a)
        return out

    def tracks_named(self, artist: str, title: str, *, loose: bool = False) -> list[int]:
        """Tracks by ``artist`` (primary) titled ``title``; Last.fm-style matching, where the
        title may or may not carry its "(feat. ...)" part."""
        out = []
        want = _loose(strip_feat(title)) if loose else title.casefold()
        for a in self.artists_named(artist, loose=loose):
            for i in self.tracks_of_artist(a):
                tr = self.track(i)
                if tr.artists[0] != a:
                    continue
                if loose:
                    if _loose(tr.title) == want:
                        out.append(i)
                elif tr.display_title.casefold() == want or tr.title.casefold() == want:
                    out.append(i)
        return out

    # ------------------------------------------------------------------- construction
    def _real_track_isrc(self, i: int) -> str:
        rt = REAL_TRACKS[i]
        if rt.isrc:
            return rt.isrc
        country = REAL_ARTISTS[self._artist_by_name[rt.credits[0][0]]].country
        return self.codec.isrc(i, country, int(rt.release_date[:4]))

    def _is_dup(self, i: int) -> bool:
        s = i - self.n_real
        return s > 0 and s % 2 == 1 and self.codec.hash(_D_DUP, i) % 40 == 0

    def _title_parts(self, i: int) -> tuple[tuple[int, ...], int]:
        if self._is_dup(i):
            i -= 1
        h = self.codec.hash(_D_TRACKH, i)
        n_words = 1 if h % 10 < 3 else 2 if h % 10 < 8 else 3
        h //= 10
        nw = len(W.TITLE_WORDS)
        words = []
        for _ in range(n_words):
            h, w = divmod(h, nw)
            words.append(w)
        suffix = (h // 20) % len(W.TITLE_SUFFIXES) if h % 20 < 2 else -1
        return tuple(words), suffix

    def _build_index(self) -> _Index:
        idx = _Index()
        for i in range(self.n_real):
            for t in set(tokens(REAL_TRACKS[i].title)):
                _add(idx.title, t, i)
        # Synthetic titles are word ids: collect per word id, then fold words to tokens.
        by_word: list[array[int]] = [array("I") for _ in W.TITLE_WORDS]
        by_suffix: list[array[int]] = [array("I") for _ in W.TITLE_SUFFIXES]
        title_parts = self._title_parts
        for i in range(self.n_real, self.size):
            words, suffix = title_parts(i)
            for w in set(words):
                by_word[w].append(i)
            if suffix >= 0:
                by_suffix[suffix].append(i)
        merged: dict[str, list[array[int]]] = {}
        for w, bucket in enumerate(by_word):
            for t in self._title_word_tokens[w]:
                merged.setdefault(t, []).append(bucket)
        for sfx, bucket in enumerate(by_suffix):
            for t in self._suffix_tokens[sfx]:
                merged.setdefault(t, []).append(bucket)
        for t, buckets in merged.items():
            existing = idx.title.get(t)
            parts = ([existing] if existing is not None else []) + buckets
            idx.title[t] = parts[0] if len(parts) == 1 else array("I", sorted(set().union(*parts)))
        for a in range(self.n_artists):
            for t in set(tokens(self.artist(a).name)):
                _add(idx.artist, t, a)
        for al in range(self.n_albums):
            for t in set(tokens(self._album_name(al))):
                _add(idx.album, t, al)
        for i in range(self.n_real, self.size):
            guest = self._guest_of(i)
            if guest is not None:
                idx.featured.setdefault(guest, []).append(i)
        for i, rt in enumerate(REAL_TRACKS):
            for name, _ in rt.credits[1:]:
                idx.featured.setdefault(self._artist_by_name[name], []).append(i)
        return idx

    def _guest_of(self, i: int) -> int | None:
        if self._is_dup(i):
            i -= 1
        h = self.codec.hash(_D_TRACKH2, i)
        n_synth_artists = self.n_artists - self.n_real_artists
        if (h >> 40) % 100 >= 7 or n_synth_artists < 2:
            return None
        own = self.n_real_artists + (i - self.n_real) // TRACKS_PER_ARTIST
        guest = self.n_real_artists + (h >> 48) % n_synth_artists
        return guest if guest != own else None

    def _make_artist(self, a: int) -> Artist:
        codec = self.codec
        h = codec.hash(_D_ARTISTH, a)
        if a < self.n_real_artists:
            ra = REAL_ARTISTS[a]
            family = W.GENRE_FAMILIES[ra.genre_family]
            name, sort_name, kind, country = ra.name, ra.sort_name, ra.kind, ra.country
            disambiguation = ra.disambiguation
            popularity = 60 + h % 35
            spotify_id = ra.spotify_id or codec.spotify_id(_D_ARTIST, a)
            mbid = ra.mbid or codec.mbid(_D_MBARTIST, a)
            tags = ra.lastfm_tags or _tags_for(family, h, 5)
        else:
            family = W.GENRE_FAMILIES[h % len(W.GENRE_FAMILIES)]
            x = h // len(W.GENRE_FAMILIES)
            x, pick = divmod(x, 10)
            if pick < 4:
                x, f = divmod(x, len(W.FIRST_NAMES))
                x, last = divmod(x, len(W.LAST_NAMES))
                kind = "Person"
                name = f"{W.FIRST_NAMES[f]} {W.LAST_NAMES[last]}"
                sort_name = f"{W.LAST_NAMES[last]}, {W.FIRST_NAMES[f]}"
            else:
                x, adj = divmod(x, len(W.BAND_ADJECTIVES))
                x, noun = divmod(x, len(W.BAND_NOUNS))
                x, the = divmod(x, 100)
                kind = "Group"
                base = f"{W.BAND_ADJECTIVES[adj]} {W.BAND_NOUNS[noun]}"
                name, sort_name = (f"The {base}", f"{base}, The") if the < 35 else (base, base)
            x, c = divmod(x, len(W.COUNTRIES))
            country = W.COUNTRIES[c]
            noun_word = "singer" if kind == "Person" else "band"
            disambiguation = f"{country} {family[0]} {noun_word}" if x % 4 == 0 else ""
            popularity = int(90 * ((h >> 50) % 1000 / 1000) ** 1.5)
            spotify_id = codec.spotify_id(_D_ARTIST, a)
            mbid = codec.mbid(_D_MBARTIST, a)
            tags = _tags_for(family, h, 3 + h % 6)
        h2 = codec.hash(_D_ARTISTH + 100, a)
        begin = 1960 + (h2 >> 16) % 61
        if a < self.n_real_artists:
            begin = REAL_ARTISTS[a].begin or begin
        listeners = int(10 ** (2 + popularity / 22)) + h2 % 997
        return Artist(
            index=a,
            name=name,
            sort_name=sort_name,
            kind=kind,
            country=country,
            disambiguation=disambiguation,
            spotify_id=spotify_id,
            mbid=mbid,
            genres=tuple(family[1 + (h2 >> k) % (len(family) - 1)] for k in (0, 8))[: 1 + h2 % 2],
            popularity=popularity,
            followers=int(10 ** (1 + popularity / 18)) + h2 % 1013,
            begin_year=begin,
            listeners=listeners,
            playcount=listeners * (4 + (h2 >> 24) % 20),
            tags=tags,
            image_hash=f"{codec.hash(_D_IMG, a):016x}{h2:016x}",
        )

    def _album_name(self, al: int) -> str:
        if al < self.n_real_albums:
            return self._real_albums[al][1]
        h = self.codec.hash(_D_ALBUMH, al)
        pick, h = h % 10, h // 10
        h, word = divmod(h, len(W.ALBUM_WORDS))
        adj = h % len(W.ALBUM_ADJECTIVES)
        if pick < 6:
            return f"{W.ALBUM_ADJECTIVES[adj]} {W.ALBUM_WORDS[word]}"
        if pick < 9:
            return W.ALBUM_WORDS[word]
        return self.artist(self._album_artist(al)).name  # an eponymous album

    def _album_artist(self, al: int) -> int:
        if al < self.n_real_albums:
            return self._artist_by_name[self._real_albums[al][0]]
        return self.n_real_artists + (al - self.n_real_albums) // 2

    def _make_album(self, al: int) -> Album:
        codec = self.codec
        h = codec.hash(_D_ALBUMH + 100, al)
        artist = self._album_artist(al)
        if al < self.n_real_albums:
            first = REAL_TRACKS[self._real_album_tracks[al][0]]
            date = first.release_date
            spotify_id = first.album_spotify_id or codec.spotify_id(_D_ALBUM, al)
            total = max(12, max(REAL_TRACKS[i].track_number for i in self._real_album_tracks[al]))
        else:
            begin = self.artist(artist).begin_year
            nth = (al - self.n_real_albums) % 2
            year = min(2025, begin + nth * (2 + h % 5) + (h >> 8) % 4)
            date = f"{year:04d}-{1 + (h >> 12) % 12:02d}-{1 + (h >> 16) % 28:02d}"
            spotify_id = codec.spotify_id(_D_ALBUM, al)
            total = min(TRACKS_PER_ALBUM, len(self.tracks_of_album(al)))
        return Album(
            key=al,
            name=self._album_name(al),
            artist=artist,
            spotify_id=spotify_id,
            release_mbid=codec.mbid(_D_RELEASE, al),
            release_group_mbid=codec.mbid(_D_RG, al),
            release_date=date,
            album_type="album" if total > 3 else "single",
            total_tracks=total,
            country=self.artist(artist).country,
            image_hash=f"{codec.hash(_D_IMG + 1, al):016x}{h:016x}",
        )

    def _deluxe_album(self, i: int, base: Album) -> Album:
        key = self.n_albums + i
        h = self.codec.hash(_D_ALBUMH + 200, i)
        year = min(2026, base.year + 1 + h % 10)
        return Album(
            key=key,
            name=f"{base.name} (Deluxe Edition)",
            artist=base.artist,
            spotify_id=self.codec.spotify_id(_D_ALBUM, key),
            release_mbid=self.codec.mbid(_D_RELEASE, key),
            release_group_mbid=base.release_group_mbid,
            release_date=f"{year:04d}{base.release_date[4:]}",
            album_type="album",
            total_tracks=base.total_tracks + 4,
            country=base.country,
            image_hash=f"{h:016x}{base.image_hash[16:]}",
        )

    def _make_track(self, i: int) -> Track:
        if not 0 <= i < self.size:
            raise IndexError(i)
        if i < self.n_real:
            return self._make_real_track(i)
        codec = self.codec
        dup = self._is_dup(i)
        base_i = i - 1 if dup else i
        h2 = codec.hash(_D_TRACKH2, base_i)
        primary = self.n_real_artists + (i - self.n_real) // TRACKS_PER_ARTIST
        guest = self._guest_of(i)
        artists = (primary,) if guest is None else (primary, guest)
        words, suffix = self._title_parts(i)
        title = " ".join(W.TITLE_WORDS[w] for w in words)
        if suffix >= 0:
            title += W.TITLE_SUFFIXES[suffix]
        display = title if guest is None else f"{title} (feat. {self.artist(guest).name})"
        album = self.album(self.album_index_of(i))
        isrc_year = album.year
        if dup:
            album = self._deluxe_album(i, album)
        duration = 150_000 + h2 % 240_000 + (codec.hash(_D_DUP, i) % 1000 if dup else 0)
        on_spotify, on_mb, on_lastfm = self.on_spotify(i), self.on_musicbrainz(i), self.on_lastfm(i)
        popularity = self.popularity(i)
        listeners = int(10 ** (1 + popularity / 24)) + (h2 >> 30) % 500
        mbid = codec.mbid(_D_REC, i)
        family = W.GENRE_FAMILIES[codec.hash(_D_ARTISTH, primary) % len(W.GENRE_FAMILIES)]
        n_tags = (h2 >> 32) % 20
        n_tags = 0 if n_tags == 0 else 1 if n_tags < 3 else min(n_tags // 2, 9)
        tags = _tags_for(family, h2 >> 8, n_tags)
        return Track(
            index=i,
            title=title,
            display_title=display,
            artists=artists,
            joinphrases=("",) if guest is None else (" feat. ", ""),
            album=album,
            track_number=(i - self.n_real) % TRACKS_PER_ALBUM + 1,
            duration_ms=duration,
            mb_length=duration + (h2 >> 36) % 801 - 400,
            lastfm_duration=0 if (h2 >> 44) % 20 == 0 else duration // 1000 * 1000,
            explicit=(h2 >> 50) % 100 < 8,
            popularity=popularity,
            isrc=codec.isrc(base_i, self.artist(primary).country, isrc_year),
            spotify_id=codec.spotify_id(_D_TRACK, i) if on_spotify else None,
            mbid=mbid if on_mb else None,
            on_lastfm=on_lastfm,
            lastfm_mbid=mbid if on_mb and (h2 >> 56) % 10 < 7 else "",
            listeners=listeners,
            playcount=listeners * (3 + (h2 >> 58) % 12),
            tags=tags,
            mb_tags=tuple((name, 1 + count // 25) for name, count in tags[:4]),
            mb_genres=tuple(name for name, _ in tags[:4] if name.casefold() in _ALL_GENRES),
        )

    def _make_real_track(self, i: int) -> Track:
        rt = REAL_TRACKS[i]
        codec = self.codec
        h2 = codec.hash(_D_TRACKH2, i)
        artists = tuple(self._artist_by_name[name] for name, _ in rt.credits)
        title = rt.title
        if rt.feat_in_title:
            guests = " & ".join(name for name, _ in rt.credits[1:])
            display = f"{title} (feat. {guests})"
        else:
            display = title
        popularity = self.popularity(i)
        listeners = 200_000 + h2 % 2_000_000
        tags = tuple(sorted(rt.tags, key=lambda t: -t[1]))
        mbid = rt.mbid or codec.mbid(_D_REC, i)
        # A name shared with an earlier real track (Mr. Brightside's two releases) is one
        # Last.fm page: Last.fm keys tracks by artist and title.
        first_same = next(
            j for j, o in enumerate(REAL_TRACKS) if o.title == rt.title and o.credits == rt.credits
        )
        return Track(
            index=i,
            title=title,
            display_title=display,
            artists=artists,
            joinphrases=tuple(join for _, join in rt.credits),
            album=self.album(self.album_index_of(i)),
            track_number=rt.track_number,
            duration_ms=rt.duration_ms,
            mb_length=rt.duration_ms,
            lastfm_duration=rt.duration_ms // 1000 * 1000,
            explicit=rt.explicit,
            popularity=popularity,
            isrc=self._real_track_isrc(i),
            spotify_id=rt.spotify_id or codec.spotify_id(_D_TRACK, i),
            mbid=mbid,
            on_lastfm=first_same == i,
            lastfm_mbid=rt.lastfm_mbid or mbid,
            listeners=listeners,
            playcount=listeners * (8 + h2 % 9),
            tags=tags,
            mb_tags=tuple((name.casefold(), 1 + count // 25) for name, count in tags[:4]),
            mb_genres=tuple(n.casefold() for n, _ in tags[:4] if n.casefold() in _ALL_GENRES),
        )

    def mb_track_id(self, i: int) -> str:
        """The MBID of the track (the medium position) a recording appears as."""
        return self.codec.mbid(_D_MBTRACK, i)


def _loose(text: str) -> str:
    folded = fold(text)
    return folded[4:] if folded.startswith("the ") else folded


def _tags_for(family: Sequence[str], h: int, n: int) -> tuple[tuple[str, int], ...]:
    """``n`` tags from a genre family plus user tags, Last.fm-style counts (100 first)."""
    names: list[str] = []
    pool = [*list(family[1:]), family[0], *list(W.EXTRA_TAGS)]
    x = h
    while len(names) < n and pool:
        x, k = divmod(x, len(pool)) if x else (0, len(names) % len(pool))
        if len(names) == 0:
            k = k % len(family)  # the first tag is always a genre of the family
        names.append(pool.pop(k))
    counts = [100]
    for _ in names[1:]:
        counts.append(max(1, counts[-1] * (45 + len(counts) * 5) // 100))
    return tuple(zip(names, counts, strict=False))


@lru_cache(maxsize=8)
def get_catalog(size: int = 10_000, seed: int = 0) -> Catalog:
    """A shared catalogue per (size, seed): catalogues are immutable, so servers share them."""
    return Catalog(size, seed)
