"""The deterministic catalogue the three providers serve, derived lazily from (index, seed).

Layout: the hand-picked real tracks (``_realtracks``) come first, then synthetic tracks. A
synthetic track ``i`` belongs to artist ``s // 20`` and album ``s // 10`` (``s`` its position
among synthetic tracks), so an artist has two albums of ten tracks. Every property is a pure
function of (seed, index): nothing is stored per track except the search index, which holds
only integers (about 40 bytes per track: word postings, ranking keys, who lacks which
track), so a million tracks fit comfortably.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

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

# A synthetic track's presence draw (0..99) in these sets: the provider does not have it.
_OFF_SPOTIFY = frozenset({2, 3, 10})
_OFF_MUSICBRAINZ = frozenset({0, 1, 3, 7, 8, 9})
_OFF_LASTFM = frozenset({0, 1, 2, 4, 5, 6})
_LISTENERS_CEILING = 1 << 31  # above any track's listener count (ranking keys)
K = TypeVar("K")


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
    """What searches need without building tracks: token -> sorted indexes (titles, artist
    names, album names, genres), albums by year, which tracks each provider lacks, and
    ranking keys.

    A ranking key is ``(rank << 32) | index``, lowest first: ``keys.__getitem__`` orders
    candidates by rank, then index, without a Python-level key function.
    """

    def __init__(self) -> None:
        self.title: dict[str, array[int]] = {}
        self.artist: dict[str, array[int]] = {}
        self.album: dict[str, array[int]] = {}
        self.featured: dict[int, list[int]] = {}  # guest artist -> its guest appearances
        self.genre: dict[str, array[int]] = {}  # a word of a Spotify genre -> artists
        self.artist_name: dict[str, array[int]] = {}  # folded full name -> artists
        self.artist_name_len = array("B")  # words in each artist's name
        self.title_len = array("B")  # words in each track's title
        self.album_years: dict[int, array[int]] = {}  # release year -> albums
        self.reissue_years: dict[int, array[int]] = {}  # deluxe reissue's year -> its tracks
        self.reissued: set[int] = set()  # tracks on a deluxe reissue
        self.off_spotify: set[int] = set()  # tracks each provider does not have
        self.off_musicbrainz: set[int] = set()
        self.off_lastfm: set[int] = set()
        self.track_rank = array("Q")  # Spotify popularity, highest first
        self.listener_rank = array("Q")  # Last.fm listeners, most first
        self.artist_rank = array("Q")  # artist popularity, highest first
        self.album_rank = array("Q")  # the album artist's popularity, highest first


def _add(table: dict[K, array[int]], key: K, index: int) -> None:
    bucket = table.get(key)
    if bucket is None:
        bucket = table[key] = array("I")
    bucket.append(index)


def _rank_key(rank: int, index: int) -> int:
    return (rank << 32) | index


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
        self._family_tags = [
            frozenset(fold(t) for t in (*family, *W.EXTRA_TAGS)) for family in W.GENRE_FAMILIES
        ]
        self._title_word_tokens = [tokens(w) for w in W.TITLE_WORDS]
        self._suffix_tokens = [tokens(s) for s in W.TITLE_SUFFIXES]
        self.track = lru_cache(maxsize=8192)(self._make_track)
        self.artist = lru_cache(maxsize=4096)(self._make_artist)
        self.album = lru_cache(maxsize=4096)(self._make_album)

    # ---------------------------------------------------------------------- lookups by id
    def track_by_spotify_id(self, sid: str) -> int | None:
        return self._by_id(
            sid,
            self._real_track_sid,
            lambda key: self.codec.spotify_index(_D_TRACK, key),
            self.size,
            lambda i: self.track(i).spotify_id,
        )

    def artist_by_spotify_id(self, sid: str) -> int | None:
        return self._by_id(
            sid,
            self._real_artist_sid,
            lambda key: self.codec.spotify_index(_D_ARTIST, key),
            self.n_artists,
            lambda a: self.artist(a).spotify_id,
        )

    def track_by_mbid(self, mbid: str) -> int | None:
        return self._by_id(
            mbid.lower(),
            self._real_track_mbid,
            lambda key: self.codec.mbid_index(_D_REC, key),
            self.size,
            lambda i: self.track(i).mbid,
        )

    def artist_by_mbid(self, mbid: str) -> int | None:
        return self._by_id(
            mbid.lower(),
            self._real_artist_mbid,
            lambda key: self.codec.mbid_index(_D_MBARTIST, key),
            self.n_artists,
            lambda a: self.artist(a).mbid,
        )

    @staticmethod
    def _by_id(
        key: str,
        real: Mapping[str, int],
        decode: Callable[[str], int | None],
        count: int,
        id_of: Callable[[int], str | None],
    ) -> int | None:
        """The index whose entity carries ``key``: a real one by table, else the index the id
        decodes to when that entity, built, carries the same id (a real entity with its own
        id does not, so its synthetic id finds nothing)."""
        if key in real:
            return real[key]
        n = decode(key)
        if n is None or n >= count:
            return None
        return n if id_of(n) == key else None

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
        """Spotify popularity without building the track."""
        if i < self.n_real:
            return 60 + (self.codec.hash(_D_TRACKH2, i) % 30)
        return _synthetic_popularity(self.codec.hash(_D_TRACKH2, i))

    def _presence(self, i: int) -> int:
        return _presence_draw(self.codec.hash(_D_TRACKH2, i - 1 if self._is_dup(i) else i))

    def on_spotify(self, i: int) -> bool:
        """Cheap presence test (no track built): most tracks are everywhere, some are not."""
        return i < self.n_real or self._presence(i) not in _OFF_SPOTIFY

    def on_musicbrainz(self, i: int) -> bool:
        return i < self.n_real or self._presence(i) not in _OFF_MUSICBRAINZ

    def on_lastfm(self, i: int) -> bool:
        if i < self.n_real:
            return self.track(i).on_lastfm
        return not self._is_dup(i) and self._presence(i) not in _OFF_LASTFM

    def track_number(self, i: int) -> int:
        if i < self.n_real:
            return REAL_TRACKS[i].track_number
        return (i - self.n_real) % TRACKS_PER_ALBUM + 1

    def track_album(self, i: int) -> Album:
        """The album a track appears on (a deluxe reissue's for a reissued track)."""
        album = self.album(self.album_index_of(i))
        return self._deluxe_album(i, album) if i >= self.n_real and self._is_dup(i) else album

    def mb_length(self, i: int) -> int:
        """The MusicBrainz recording length without building the track."""
        if i < self.n_real:
            return REAL_TRACKS[i].duration_ms
        return self._durations(i)[1]

    def mb_tag_names(self, i: int) -> list[str]:
        """The MusicBrainz folksonomy tags' names without building the track."""
        if i < self.n_real:
            return [name for name, _ in self.track(i).mb_tags]
        return [name for name, _ in self._synthetic_tags(i)[:4]]

    def may_have_tag(self, i: int, folded: str) -> bool:
        """False when track ``i`` cannot carry the tag (folded): its genre family's pool lacks
        it. Ten times cheaper than computing the tags."""
        return i < self.n_real or folded in self._family_tags[self._family_of(i)]

    def tracks_led_by(self, a: int) -> Sequence[int]:
        """Tracks whose first credited artist is ``a`` (not its guest appearances)."""
        if a < self.n_real_artists:
            name = REAL_ARTISTS[a].name
            own = self._real_artist_tracks.get(a, [])
            return [i for i in own if REAL_TRACKS[i].credits[0][0] == name]
        s0 = self.n_real + (a - self.n_real_artists) * TRACKS_PER_ARTIST
        return range(s0, min(s0 + TRACKS_PER_ARTIST, self.size))

    def albums_of_artist(self, a: int) -> list[int]:
        """The albums ``a`` is the album artist of (no deluxe reissues)."""
        if a < self.n_real_artists:
            name = REAL_ARTISTS[a].name
            return [al for al, (artist, _) in enumerate(self._real_albums) if artist == name]
        al0 = self.n_real_albums + (a - self.n_real_artists) * (
            TRACKS_PER_ARTIST // TRACKS_PER_ALBUM
        )
        return list(range(al0, min(al0 + TRACKS_PER_ARTIST // TRACKS_PER_ALBUM, self.n_albums)))

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
            for i in self.tracks_led_by(a):
                tr = self.track(i)
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
        for a in range(self.n_artists):
            artist = self.artist(a)
            name_words = tokens(artist.name)
            for word in set(name_words):
                _add(idx.artist, word, a)
            _add(idx.artist_name, " ".join(name_words), a)
            idx.artist_name_len.append(min(len(name_words), 255))
            for word in {t for g in artist.genres for t in tokens(g)}:
                _add(idx.genre, word, a)
            idx.artist_rank.append(_rank_key(100 - artist.popularity, a))
        album_year = array("H")
        for al in range(self.n_albums):
            for t in set(tokens(self._album_name(al))):
                _add(idx.album, t, al)
            album_year.append(int(self._album_date(al)[:4]))
            _add(idx.album_years, album_year[al], al)
            popularity = self.artist(self._album_artist(al)).popularity
            idx.album_rank.append(_rank_key(100 - popularity, al))
        for i in range(self.n_real):
            track = self.track(i)
            idx.title_len.append(min(len(self.title_tokens(i)), 255))
            idx.track_rank.append(_rank_key(100 - track.popularity, i))
            idx.listener_rank.append(_rank_key(_LISTENERS_CEILING - track.listeners, i))
            if not track.on_lastfm:
                idx.off_lastfm.add(i)
            for name, _ in REAL_TRACKS[i].credits[1:]:
                idx.featured.setdefault(self._artist_by_name[name], []).append(i)
        # Synthetic tracks: one pass computing each hash once. Titles are word ids: collect
        # per word id, then fold words to tokens.
        by_word: list[array[int]] = [array("I") for _ in W.TITLE_WORDS]
        by_suffix: list[array[int]] = [array("I") for _ in W.TITLE_SUFFIXES]
        track_hash = self.codec.hash
        word_lens = [len(t) for t in self._title_word_tokens]
        suffix_lens = [len(t) for t in self._suffix_tokens]
        for i in range(self.n_real, self.size):
            dup = self._is_dup(i)
            base = i - 1 if dup else i
            words, suffix = self._title_parts(i)
            for w in set(words):
                by_word[w].append(i)
            if suffix >= 0:
                by_suffix[suffix].append(i)
            idx.title_len.append(
                sum(word_lens[w] for w in words) + (suffix_lens[suffix] if suffix >= 0 else 0)
            )
            h2 = track_hash(_D_TRACKH2, base)
            guest = self._guest_from(base, h2)
            if guest is not None:
                idx.featured.setdefault(guest, []).append(i)
            presence = _presence_draw(h2)
            if presence in _OFF_SPOTIFY:
                idx.off_spotify.add(i)
            if presence in _OFF_MUSICBRAINZ:
                idx.off_musicbrainz.add(i)
            if dup or presence in _OFF_LASTFM:
                idx.off_lastfm.add(i)
            popularity = _synthetic_popularity(track_hash(_D_TRACKH2, i) if dup else h2)
            idx.track_rank.append(_rank_key(100 - popularity, i))
            listeners = _synthetic_listeners(popularity, h2)
            idx.listener_rank.append(_rank_key(_LISTENERS_CEILING - listeners, i))
            if dup:
                year = self._deluxe_year(i, album_year[self.album_index_of(i)])
                _add(idx.reissue_years, year, i)
                idx.reissued.add(i)
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
        return idx

    def _guest_of(self, i: int) -> int | None:
        base = i - 1 if self._is_dup(i) else i
        return self._guest_from(base, self.codec.hash(_D_TRACKH2, base))

    def _guest_from(self, base: int, h2: int) -> int | None:
        """The guest artist of a (not reissued) synthetic track ``base`` with hash ``h2``."""
        n_synth_artists = self.n_artists - self.n_real_artists
        if (h2 >> 40) % 100 >= 7 or n_synth_artists < 2:
            return None
        own = self.n_real_artists + (base - self.n_real) // TRACKS_PER_ARTIST
        guest = self.n_real_artists + (h2 >> 48) % n_synth_artists
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

    def _album_date(self, al: int) -> str:
        if al < self.n_real_albums:
            return REAL_TRACKS[self._real_album_tracks[al][0]].release_date
        h = self.codec.hash(_D_ALBUMH + 100, al)
        begin = self.artist(self._album_artist(al)).begin_year
        nth = (al - self.n_real_albums) % 2
        year = min(2025, begin + nth * (2 + h % 5) + (h >> 8) % 4)
        return f"{year:04d}-{1 + (h >> 12) % 12:02d}-{1 + (h >> 16) % 28:02d}"

    def _make_album(self, al: int) -> Album:
        codec = self.codec
        h = codec.hash(_D_ALBUMH + 100, al)
        artist = self._album_artist(al)
        if al < self.n_real_albums:
            first = REAL_TRACKS[self._real_album_tracks[al][0]]
            spotify_id = first.album_spotify_id or codec.spotify_id(_D_ALBUM, al)
            total = max(12, max(REAL_TRACKS[i].track_number for i in self._real_album_tracks[al]))
        else:
            spotify_id = codec.spotify_id(_D_ALBUM, al)
            total = min(TRACKS_PER_ALBUM, len(self.tracks_of_album(al)))
        return Album(
            key=al,
            name=self._album_name(al),
            artist=artist,
            spotify_id=spotify_id,
            release_mbid=codec.mbid(_D_RELEASE, al),
            release_group_mbid=codec.mbid(_D_RG, al),
            release_date=self._album_date(al),
            album_type="album" if total > 3 else "single",
            total_tracks=total,
            country=self.artist(artist).country,
            image_hash=f"{codec.hash(_D_IMG + 1, al):016x}{h:016x}",
        )

    def _deluxe_year(self, i: int, base_year: int) -> int:
        return min(2026, base_year + 1 + self.codec.hash(_D_ALBUMH + 200, i) % 10)

    def _deluxe_album(self, i: int, base: Album) -> Album:
        key = self.n_albums + i
        h = self.codec.hash(_D_ALBUMH + 200, i)
        year = self._deluxe_year(i, base.year)
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
        duration, mb_length = self._durations(i)
        on_spotify, on_mb, on_lastfm = self.on_spotify(i), self.on_musicbrainz(i), self.on_lastfm(i)
        popularity = self.popularity(i)
        listeners = _synthetic_listeners(popularity, h2)
        mbid = codec.mbid(_D_REC, i)
        tags = self._synthetic_tags(i)
        return Track(
            index=i,
            title=title,
            display_title=display,
            artists=artists,
            joinphrases=("",) if guest is None else (" feat. ", ""),
            album=album,
            track_number=self.track_number(i),
            duration_ms=duration,
            mb_length=mb_length,
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

    def _durations(self, i: int) -> tuple[int, int]:
        """(Spotify duration, MusicBrainz length) of synthetic track ``i``."""
        dup = self._is_dup(i)
        h2 = self.codec.hash(_D_TRACKH2, i - 1 if dup else i)
        duration = 150_000 + h2 % 240_000 + (self.codec.hash(_D_DUP, i) % 1000 if dup else 0)
        return duration, duration + (h2 >> 36) % 801 - 400

    def _synthetic_tags(self, i: int) -> tuple[tuple[str, int], ...]:
        """Last.fm top tags of synthetic track ``i`` (MusicBrainz's are the first four)."""
        h2 = self.codec.hash(_D_TRACKH2, i - 1 if self._is_dup(i) else i)
        family = W.GENRE_FAMILIES[self._family_of(i)]
        n_tags = (h2 >> 32) % 20
        n_tags = 0 if n_tags == 0 else 1 if n_tags < 3 else min(n_tags // 2, 9)
        return _tags_for(family, h2 >> 8, n_tags)

    def _family_of(self, i: int) -> int:
        """The genre family of synthetic track ``i`` (its first artist's): its tags' pool."""
        primary = self.n_real_artists + (i - self.n_real) // TRACKS_PER_ARTIST
        return self.codec.hash(_D_ARTISTH, primary) % len(W.GENRE_FAMILIES)

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

    def release_by_mbid(self, mbid: str) -> tuple[Album, list[int]] | None:
        """The release with this MBID (an album, or the deluxe reissue one duplicated
        recording appears on) and its tracks on MusicBrainz, in album order; None when
        there is no such release or none of its tracks is on MusicBrainz."""
        mbid = mbid.lower()
        key = self.codec.mbid_index(_D_RELEASE, mbid)
        if key is None:
            return None
        if key < self.n_albums:
            album = self.album(key)
            tracks = [i for i in self.tracks_of_album(key) if not self._is_dup(i)]
        else:
            i = key - self.n_albums
            if not (self.n_real <= i < self.size and self._is_dup(i)):
                return None
            album, tracks = self.track(i).album, [i]
        tracks = [i for i in tracks if self.on_musicbrainz(i)]
        if album.release_mbid != mbid or not tracks:
            return None
        return album, sorted(tracks, key=lambda i: self.track(i).track_number)


def _synthetic_popularity(h: int) -> int:
    return int(95 * ((h >> 20) % 1000 / 1000) ** 2.2)


def _presence_draw(h2: int) -> int:
    return (h2 >> 20) % 100


def _synthetic_listeners(popularity: int, h2: int) -> int:
    return int(10 ** (1 + popularity / 24)) + (h2 >> 30) % 500


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
