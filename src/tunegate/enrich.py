"""``tunegate enrich``: join each (artist, title) row to Spotify, MusicBrainz and Last.fm.

For every input row: Spotify ``search_track`` gives the track and its ISRC; MusicBrainz
``lookup_isrc`` gives the recording (``search_recording`` when Spotify had no ISRC or
MusicBrainz does not know it); Last.fm ``get_track_tags`` gives the tags. One provider
failing leaves the others' answers in the record, with the error named. Each provider is
a stage with its own concurrency, timeout and pause; Spotify and Last.fm start at once,
MusicBrainz when the ISRC is known, its lookups batched 50 to a request, so a run takes
about max over providers of (calls / rate) (``docs/enrich.md``).

The output is JSON Lines, one record per row, appended as each row finishes, so a killed run
loses at most the rows in flight. A re-run resumes: rows whose last record is ``ok`` (or
``invalid``: bad input never gets better) are skipped, the others are tried again and their
new record supersedes the old one. At the end of a run the file is rewritten, when needed,
as one record per row in row order (to a temporary file, then an atomic rename). A torn last
line (a kill in the middle of a write) is cut off on resume. A lock file beside the output
keeps two runs from writing the same output.
"""

from __future__ import annotations

import asyncio
import csv
import fcntl
import hashlib
import logging
import os
import re
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tunegate.clients import AsyncGateway
from tunegate.exceptions import (
    CircuitBreakerOpenError,
    ConfigurationError,
    InvalidInput,
    NotFound,
    ProviderUnavailable,
    RateLimited,
    RateLimitTimeout,
    TunegateError,
)
from tunegate.observability import track_sources
from tunegate.providers import matching, validate
from tunegate.providers.musicbrainz import check_isrc_batch_size

__all__ = [
    "EnrichSummary",
    "OutputIndex",
    "Providers",
    "Row",
    "check_input",
    "count_rows",
    "enrich",
    "enrich_row",
    "input_format",
    "read_rows",
    "scan_output",
]

log = logging.getLogger("tunegate.enrich")

# One set of column names for every format, compared after _key() (case, spaces,
# underscores and hyphens ignored): "Artist Name", "artist_name" and "ARTISTNAME" are one.
COLUMNS: dict[str, tuple[str, ...]] = {
    "artist": ("artist", "artistname", "artists", "performer"),
    "title": ("title", "track", "trackname", "tracktitle", "name", "song", "songname"),
    "isrc": ("isrc",),
    "spotify_id": ("spotifyid", "spotifytrackid"),
}
ARTIST_COLUMNS = COLUMNS["artist"]
TITLE_COLUMNS = COLUMNS["title"]
# New statuses go at the end: OutputIndex stores an index into this tuple.
STATUSES = ("ok", "partial", "failed", "invalid", "not_found")
PROVIDER_STATUSES = ("found", "not_found", "error", "skipped", "pending")
_FINAL = frozenset({"ok", "invalid", "not_found"})  # never tried again on resume
_PENDING_AFTER = 60.0  # a provider that asks for a longer wait than this is left pending
_FSYNC_EVERY = 1.0  # seconds between fsyncs of the output (a flush happens per record)


@dataclass(frozen=True)
class Row:
    """One input row; ``index`` counts data rows from 0 and identifies the row on resume."""

    index: int
    artist: str
    title: str
    line: int = 0  # the input file's line the row starts on (1-based; 0 unknown)
    isrc: str | None = None
    spotify_id: str | None = None
    error: str | None = None  # the row could not be read: it becomes an ``invalid`` record

    @property
    def digest(self) -> int:
        """A 64-bit digest of the input, to tell a resumed output of another input."""
        h = hashlib.blake2b(f"{self.artist}\0{self.title}".encode(), digest_size=8)
        return int.from_bytes(h.digest(), "big")


@dataclass
class EnrichSummary:
    """What a run did; ``status`` counts the records written by this run."""

    total: int = 0
    skipped: int = 0
    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    compacted: bool = False
    seconds: float = 0.0
    # provider -> its status (found, not_found, ...) -> records of this run
    providers: dict[str, dict[str, int]] = field(default_factory=dict)
    records: int = 0  # rows of the input with a record in the output at the end

    @property
    def complete(self) -> bool:
        """Every input row has exactly one record in the output."""
        return self.records == self.total


# -- input -------------------------------------------------------------------------------


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def _columns(header: list[str], where: str) -> dict[str, int]:
    """Field name -> position; ConfigurationError when artist or title is missing."""
    keys = [_key(h) for h in header]
    found: dict[str, int] = {}
    for field_name, names in COLUMNS.items():
        for name in names:
            if name in keys:
                found[field_name] = keys.index(name)
                break
    for field_name in ("artist", "title"):
        if field_name not in found:
            raise ConfigurationError(
                f"{where}: no {field_name} column; the header must name one of "
                f"{', '.join(COLUMNS[field_name])} (case, spaces and underscores ignored; "
                f"found: {', '.join(header) or 'nothing'})"
            )
    return found


def input_format(path: Path) -> str:
    """``csv``, ``tsv`` or ``jsonl``: by extension, else sniffed from the first line."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix == ".csv":
        return "csv"
    with path.open("rb") as f:
        first = b""
        for first in f:
            if first.strip():
                break
    first = first.lstrip(b"\xef\xbb\xbf").strip()
    if first.startswith(b"{"):
        return "jsonl"
    if b"\t" in first and b"," not in first:
        return "tsv"
    return "csv"


def read_rows(path: Path) -> Iterator[Row]:
    """Rows of a CSV or TSV file with a header, or of a JSON Lines file (see
    :data:`COLUMNS` for the names accepted). UTF-8. A row that cannot be read is yielded
    with ``error`` set (so it becomes an ``invalid`` record); an input that cannot be read
    at all raises ConfigurationError naming the line."""
    try:
        fmt = input_format(path)
        if fmt == "jsonl":
            yield from _jsonl_rows(path)
        else:
            yield from _delimited_rows(path, "\t" if fmt == "tsv" else ",")
    except UnicodeDecodeError as exc:
        line, column = _undecodable_at(path, exc)
        raise ConfigurationError(
            f"{path}: line {line} is not UTF-8 text (byte {column} of the line); "
            "save the file as UTF-8"
        ) from None


def _undecodable_at(path: Path, exc: UnicodeDecodeError) -> tuple[int, int]:
    """Line number and byte in it of the first bytes that are not UTF-8 (text-mode reading
    decodes in chunks, so the exception alone cannot say which line)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                return number, bad.start + 1
    return 1, exc.start + 1  # pragma: no cover - the decoder and this scan disagree


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _optional(value: Any) -> str | None:
    text = _text(value).strip()
    return text or None


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open("rb") as f:
        index = 0
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                item = None
            if not isinstance(item, dict):
                yield Row(index, "", "", number, error=f"line {number}: not a JSON object")
            else:
                keys = {_key(str(k)): v for k, v in item.items()}
                got = {
                    f: next((keys[n] for n in names if n in keys), None)
                    for f, names in COLUMNS.items()
                }
                yield Row(
                    index,
                    _text(got["artist"]),
                    _text(got["title"]),
                    number,
                    isrc=_optional(got["isrc"]),
                    spotify_id=_optional(got["spotify_id"]),
                )
            index += 1


def _split(line: str, delimiter: str) -> list[str]:
    # One physical line is one row (strict): an unterminated quote cannot swallow the
    # lines after it, it makes this row invalid instead.
    return next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter, strict=True), [])


def _delimited_rows(path: Path, delimiter: str) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        header: list[str] | None = None
        number = 0
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    header = _split(line, delimiter)
                except csv.Error as exc:
                    raise ConfigurationError(f"{path}:{number}: unreadable header: {exc}") from None
                break
        if header is None:
            return
        cols = _columns(header, f"{path}:{number}")
        index = 0
        for number, line in enumerate(f, number + 1):  # noqa: B020 (continues the count)
            if not line.strip():
                continue
            try:
                cells = _split(line, delimiter)
            except csv.Error as exc:
                yield Row(index, "", "", number, error=f"line {number}: {exc} (broken quoting)")
            else:
                if len(cells) != len(header):
                    yield Row(
                        index,
                        "",
                        "",
                        number,
                        error=f"line {number}: {len(cells)} fields, the header has {len(header)}",
                    )
                else:
                    yield Row(
                        index,
                        cells[cols["artist"]],
                        cells[cols["title"]],
                        number,
                        isrc=_optional(cells[cols["isrc"]]) if "isrc" in cols else None,
                        spotify_id=(
                            _optional(cells[cols["spotify_id"]]) if "spotify_id" in cols else None
                        ),
                    )
            index += 1


def count_rows(path: Path) -> int:
    """How many rows :func:`read_rows` will give (for the progress bar's total)."""
    return sum(1 for _ in read_rows(path))


# -- output ------------------------------------------------------------------------------


class OutputIndex:
    """What an existing output says, in 17 bytes per row rather than the records themselves
    (a million-row output stays a few MB): each row's last status, input digest and the
    offset of its last record."""

    def __init__(self) -> None:
        self.status = bytearray()  # 0: no record, else 1 + STATUSES.index(status)
        self.digest = array("Q")
        self.offset = array("q")
        self.records = 0
        self.ordered = True  # one record per row, rows ascending

    def _grow(self, row: int) -> None:
        missing = row + 1 - len(self.status)
        if missing > 0:
            self.status.extend(bytes(missing))
            self.digest.extend([0] * missing)
            self.offset.extend([-1] * missing)

    def add(self, row: int, status: str, digest: int, offset: int) -> None:
        if row < len(self.status):  # a row seen again, or one below the highest so far
            self.ordered = False
        self._grow(row)
        self.status[row] = 1 + STATUSES.index(status)
        self.digest[row] = digest
        self.offset[row] = offset
        self.records += 1

    def last_status(self, row: int) -> str | None:
        code = self.status[row] if row < len(self.status) else 0
        return STATUSES[code - 1] if code else None

    def __len__(self) -> int:
        """Rows that have a record."""
        return sum(1 for s in self.status if s)


def _record_digest(record: dict[str, Any]) -> int:
    inp = record["input"]
    return Row(0, str(inp["artist"]), str(inp["title"])).digest


def scan_output(path: Path) -> OutputIndex:
    """Index an existing output (an empty index when there is none).

    Every complete line must be a tunegate enrich record, else ConfigurationError and the
    file is left as it is. A torn final record (no newline: the writer was killed mid-write)
    is then cut off the file.
    """
    index = OutputIndex()
    if not path.exists():
        return index
    offset = 0
    torn_at: int | None = None
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                torn_at = offset
                break
            if line.strip():
                try:
                    record = orjson.loads(line)
                    index.add(int(record["row"]), record["status"], _record_digest(record), offset)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise ConfigurationError(
                        f"{path}:{number}: not a tunegate enrich record; choose another output file"
                    ) from None
            offset += len(line)
    if torn_at is not None:
        with path.open("rb") as f:
            f.seek(torn_at)
            tail = f.read(16)
        if not tail.startswith(b'{"row":'):
            raise ConfigurationError(
                f"{path}: not a tunegate enrich output; choose another output file"
            )
        with path.open("r+b") as f:
            f.truncate(torn_at)
    return index


def _compact(path: Path) -> None:
    """Rewrite ``path`` with one record per row, in row order, atomically; streams, so it
    needs memory for the index only."""
    index = scan_output(path)
    tmp = path.with_name(path.name + ".tmp")
    with path.open("rb") as src, tmp.open("wb") as out:
        for at in index.offset:
            if at >= 0:
                src.seek(at)
                out.write(src.readline())
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside the output for the run. The kernel drops the lock when
    the process dies, so a killed run's lock file is simply taken over; the file is removed
    when the run ends. After locking we check the name still points at the file we locked
    (a run ending at that moment may have removed it), else we lock the new one."""
    if path.parent.exists() and not path.parent.is_dir():
        raise ConfigurationError(f"{path}: {path.parent} is not a directory")
    if path.is_dir():
        raise ConfigurationError(f"{path}: the output is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigurationError(
                f"{path}: another tunegate enrich is writing it; wait for it or choose "
                "another output file"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with suppress(FileNotFoundError):
            os.unlink(lock)  # still holding the lock: nobody else owns this name
        os.close(fd)


class _Writer:
    """Appends records; flushes each, fsyncs at most once a second and at the end."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("ab")
        self._synced = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(orjson.dumps(record) + b"\n")
        self._f.flush()
        if time.monotonic() - self._synced > _FSYNC_EVERY:
            os.fsync(self._f.fileno())
            self._synced = time.monotonic()

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


# -- one row -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Providers:
    """The async clients a run uses; a provider left None is skipped (not configured)."""

    spotify: Any = None
    musicbrainz: Any = None
    lastfm: Any = None

    @classmethod
    def of(cls, gateway: AsyncGateway) -> Providers:
        found: dict[str, Any] = {}
        for name in ("spotify", "musicbrainz", "lastfm"):
            try:
                found[name] = getattr(gateway, name)
            except ConfigurationError:
                found[name] = None
        if not any(found.values()):
            raise ConfigurationError(
                "no provider is configured: set SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET, "
                "MUSICBRAINZ_USER_AGENT or LASTFM_API_KEY, or run with --sandbox"
            )
        return cls(**found)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _spotify_part(track: Any) -> dict[str, Any] | None:
    if track is None:
        return None
    return {
        "id": track["id"],
        "name": track["name"],
        "artists": [a["name"] for a in track.get("artists", ())],
        "album": (track.get("album") or {}).get("name"),
        "duration_ms": track.get("duration_ms"),
        "isrc": (track.get("external_ids") or {}).get("isrc"),
    }


def _musicbrainz_part(recording: Any) -> dict[str, Any] | None:
    if recording is None:
        return None
    return {
        "id": recording["id"],
        "title": recording.get("title"),
        "artists": [c.get("name") for c in recording.get("artist-credit") or () if c.get("name")],
        "length": recording.get("length"),
        "first_release_date": recording.get("first-release-date"),
    }


def _blank(row: Row) -> dict[str, Any]:
    inp: dict[str, Any] = {"artist": row.artist, "title": row.title}
    if row.isrc:
        inp["isrc"] = row.isrc
    if row.spotify_id:
        inp["spotify_id"] = row.spotify_id
    return {
        "row": row.index,
        "line": row.line,
        "input": inp,
        "status": None,
        "providers": {},
        "match": {},
        "spotify": None,
        "musicbrainz": None,
        "lastfm_tags": None,
        "sources": {},
        "errors": {},
    }


def _pending_until(exc: BaseException) -> float | None:
    """When a refused provider may be asked again, if the wait is too long to sit out in
    the run (an open breaker, a long Retry-After); None for an ordinary error."""
    if isinstance(exc, CircuitBreakerOpenError):
        return time.time() + exc.retry_after
    retry_after = getattr(exc, "retry_after", None)
    limited = isinstance(exc, (RateLimited, RateLimitTimeout))
    if limited and retry_after is not None and retry_after > _PENDING_AFTER:
        return time.time() + float(retry_after)
    return None


def _failed(
    record: dict[str, Any], provider: str, exc: BaseException, until: float | None = None
) -> None:
    record["errors"][provider] = _error(exc)
    until = until if until is not None else _pending_until(exc)
    part: dict[str, Any] = {"status": "pending" if until is not None else "error"}
    if until is not None:
        part["retry_at"] = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
    part["error"] = type(exc).__name__
    record["providers"][provider] = part


def _match(row: Row, title: str | None, artists: list[str], method: str) -> dict[str, Any]:
    result = matching.score(row.artist, row.title, title or "", artists)
    return {"score": round(result.total, 3), "method": method}


def _row_status(record: dict[str, Any]) -> str:
    states = [p["status"] for p in record["providers"].values()]
    tried = [s for s in states if s != "skipped"]
    bad = [s for s in tried if s in ("error", "pending")]
    if bad:
        return "failed" if len(bad) == len(tried) else "partial"
    return "ok" if "found" in tried else "not_found"


# -- stages ------------------------------------------------------------------------------
# Each provider is a stage with its own concurrency, its own timeout and its own pause;
# its rate is its client's limiter. A row runs Spotify and Last.fm at once, MusicBrainz
# once the ISRC is known, so a run takes about max over providers of (calls / rate).

STAGE_TIMEOUTS: dict[str, float] = {"spotify": 60.0, "musicbrainz": 180.0, "lastfm": 60.0}
"""Seconds one row's part at a provider may take in all (token waits, retries, and for
MusicBrainz the batches ahead of it at 1 request/s); past it the part is an error."""
DEFAULT_WINDOW = 256
"""Rows in flight at most (memory is bounded by it whatever the input's size); at least
a few ISRC batches' worth, so MusicBrainz searches go out full."""
ISRC_LINGER = 5.0
"""Seconds an ISRC batch waits to fill while Spotify is still finding ISRCs (a batch goes
at once when full, or when no row in flight can bring another ISRC)."""
_MB_SEARCHES = 2  # title searches at once: at 1/s more would only queue past their deadline
_ID_BATCH = 50  # GET /v1/tracks?ids= takes 50
_ID_LINGER = 0.05  # seconds a Spotify id batch waits for company


class _Stage:
    """One provider's stage: its gate (calls in flight), its timeout, and its pause (a
    provider that asked for a long wait is not asked again before then in this run)."""

    def __init__(self, name: str, concurrency: int, timeout: float) -> None:
        self.name = name
        self.gate = asyncio.Semaphore(concurrency)
        self.timeout = timeout
        self.paused: BaseException | None = None
        self.until = 0.0  # UNIX time

    def skip(self, record: dict[str, Any]) -> bool:
        """Mark the row pending without a call while the stage is paused."""
        if self.paused is None or time.time() >= self.until:
            return False
        _failed(record, self.name, self.paused, self.until)
        return True

    def failed(self, record: dict[str, Any], exc: BaseException) -> None:
        until = self.until if exc is self.paused else _pending_until(exc)
        if until is not None and until > self.until + 1.0:
            self.paused, self.until = exc, until
            log.warning(
                "%s paused until %s (%s): its rows are left pending",
                self.name,
                datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds"),
                type(exc).__name__,
            )
        _failed(record, self.name, exc, until)

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """``fn()`` within the stage's timeout; the pause's error while paused (a row that
        waited at the gate while another row's call brought the pause)."""
        if self.paused is not None and time.time() < self.until:
            raise self.paused
        try:
            async with asyncio.timeout(self.timeout):
                return await fn()
        except TimeoutError:
            raise ProviderUnavailable(
                f"no answer within {self.timeout:g} s (the enrich stage's timeout)",
                provider=self.name,
            ) from None


class _Ids:
    """Spotify ids gathered into ``get_tracks`` calls of up to 50 (the client falls back to
    single ``GET /v1/tracks/{id}`` on Development Mode's 403 and remembers it)."""

    def __init__(self, spotify: Any, stage: _Stage) -> None:
        self._spotify = spotify
        self._stage = stage
        self._waiting: dict[str, list[asyncio.Future[tuple[Any, str | None]]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._probe: asyncio.Event | None = None

    async def get(self, track_id: str) -> tuple[Any, str | None]:
        """The track (or None) and where it came from."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, str | None]] = loop.create_future()
        self._waiting.setdefault(track_id, []).append(future)
        if len(self._waiting) >= _ID_BATCH:
            self._send()
        elif self._timer is None:
            self._timer = loop.call_later(_ID_LINGER, self._send)
        return await future

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ids = list(self._waiting)[:_ID_BATCH]
        batch = {tid: self._waiting.pop(tid) for tid in ids}
        if batch:
            task = asyncio.get_running_loop().create_task(self._fetch(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        if self._waiting:
            self._timer = asyncio.get_running_loop().call_later(_ID_LINGER, self._send)

    async def _fetch(self, batch: dict[str, list[asyncio.Future[tuple[Any, str | None]]]]) -> None:
        ids = list(batch)
        try:
            # The first batch goes alone: its answer tells the client whether this app may
            # batch at all (Development Mode answers 403), so the 403 comes once.
            if self._probe is None:
                self._probe = asyncio.Event()
                probing = True
            else:
                probing = False
                await self._probe.wait()
            async with self._stage.gate:
                with track_sources() as sources:
                    tracks = await self._stage.call(lambda: self._spotify.get_tracks(ids))
        except BaseException as exc:
            if probing and self._probe is not None:
                self._probe.set()
            for futures in batch.values():
                for future in futures:
                    if future.done():
                        continue
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:  # cancelled: so are the rows waiting for this batch
                        future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        if probing and self._probe is not None:
            self._probe.set()
        source = sources.by_provider.get("spotify")
        for tid, track in zip(ids, tracks, strict=True):
            for future in batch[tid]:
                if not future.done():
                    future.set_result((track, source))


class _Run:
    """The stages of one run and what decides when an ISRC batch may go before it is full."""

    def __init__(
        self,
        providers: Providers,
        concurrency: int = 8,
        timeouts: Mapping[str, float] | None = None,
        *,
        steer: bool = False,
        batching: bool = True,
    ) -> None:
        self.providers = providers
        self.batching = batching
        self.steer = steer  # a whole run tells the client's ISRC batching when to linger
        limits = {**STAGE_TIMEOUTS, **(timeouts or {})}
        self.stages = {
            "spotify": _Stage("spotify", concurrency, limits["spotify"]),
            "musicbrainz": _Stage("musicbrainz", _MB_SEARCHES, limits["musicbrainz"]),
            "lastfm": _Stage("lastfm", concurrency, limits["lastfm"]),
        }
        self.ids = _Ids(providers.spotify, self.stages["spotify"])
        self.before_mb = 0  # rows in flight that may still bring MusicBrainz an ISRC
        self.reader_done = False
        self.reader_blocked = False

    def reached_musicbrainz(self) -> None:
        self.before_mb -= 1
        self.maybe_flush()

    def started(self) -> None:
        """A row that will ask MusicBrainz started: ISRC batches may linger again."""
        self.before_mb += 1
        if self.before_mb == 1:
            self._flush(False)

    def maybe_flush(self) -> None:
        """No row in flight can bring another ISRC and no new row can start (input done,
        or the window full): ISRC batches go without lingering."""
        if self.before_mb <= 0 and (self.reader_done or self.reader_blocked):
            self._flush(True)

    def _flush(self, on: bool) -> None:
        mb = self.providers.musicbrainz
        if self.steer and mb is not None and hasattr(mb, "flush_isrc_batch"):
            mb.flush_isrc_batch(on)


async def _spotify(run: _Run, row: Row, record: dict[str, Any]) -> str | None:
    """Spotify's part of the record; the ISRC it found, if any."""
    sp, stage = run.providers.spotify, run.stages["spotify"]
    state = record["providers"]
    if stage.skip(record):
        return None
    try:
        source: str | None
        if row.spotify_id and hasattr(sp, "get_tracks"):
            method = "id"
            track, source = await run.ids.get(row.spotify_id)
        else:
            async with stage.gate:
                with track_sources() as sources:
                    if row.spotify_id:
                        method = "id"
                        track = await stage.call(lambda: sp.get_track(row.spotify_id))
                    elif row.isrc:
                        method = "isrc"
                        track = await stage.call(lambda: sp.search_by_isrc(row.isrc))
                    else:
                        method = "search"
                        track = await stage.call(lambda: sp.search_track(row.artist, row.title))
            source = sources.by_provider.get("spotify")
        part = _spotify_part(track)
        record["spotify"] = part
        state["spotify"] = {"status": "found" if part else "not_found"}
        _source(record, "spotify", source)
        if part:
            record["match"]["spotify"] = _match(row, part["name"], part["artists"], method)
            return str(part["isrc"]) if part["isrc"] else None
    except NotFound:
        state["spotify"] = {"status": "not_found"}
    except TunegateError as exc:
        stage.failed(record, exc)
    return None


async def _musicbrainz(run: _Run, row: Row, isrc: str | None, record: dict[str, Any]) -> None:
    """MusicBrainz's part: the ISRC is the join key (looked up in batches: many rows wait
    at once, outside the stage's gate); a title search when there is none, or when
    MusicBrainz does not know it."""
    mb, stage = run.providers.musicbrainz, run.stages["musicbrainz"]
    state = record["providers"]
    if stage.skip(record):
        return
    try:
        with track_sources() as sources:
            method = "isrc"
            recording = None
            if isrc and run.batching:
                recording = await stage.call(lambda: mb.lookup_isrc(isrc))
            elif isrc:  # one request a row: through the gate, or they queue past deadlines
                async with stage.gate:
                    recording = await stage.call(lambda: mb.lookup_isrc(isrc))
            if recording is None:
                # The design's fallback: a title search stands in for the ISRC when Spotify
                # failed (error, open breaker, long pause) or MusicBrainz did not know it.
                spotify_failed = state.get("spotify", {}).get("status") in ("error", "pending")
                method = "fallback" if isrc or spotify_failed else "search"
                async with stage.gate:
                    recording = await stage.call(lambda: mb.search_recording(row.artist, row.title))
        part = _musicbrainz_part(recording)
        if part is not None:
            found = recording.get("isrcs") or ()
            part["isrc"] = isrc if method == "isrc" else (found[0] if found else None)
        record["musicbrainz"] = part
        state["musicbrainz"] = {"status": "found" if part else "not_found"}
        _source(record, "musicbrainz", sources.by_provider.get("musicbrainz"))
        if part:
            record["match"]["musicbrainz"] = _match(row, part["title"], part["artists"], method)
    except NotFound:
        state["musicbrainz"] = {"status": "not_found"}
    except TunegateError as exc:
        stage.failed(record, exc)


async def _lastfm(run: _Run, row: Row, record: dict[str, Any]) -> None:
    """Last.fm's tags (it needs no ISRC: it starts with Spotify)."""
    fm, stage = run.providers.lastfm, run.stages["lastfm"]
    state = record["providers"]
    if stage.skip(record):
        return
    try:
        async with stage.gate:
            with track_sources() as sources:
                tags = list(await stage.call(lambda: fm.get_track_tags(row.artist, row.title)))
                known = bool(tags)
                if not known:  # [] is both "unknown track" and "no tags": ask which
                    info = await stage.call(lambda: fm.get_track_info(row.artist, row.title))
                    known = info is not None
        record["lastfm_tags"] = tags if known else None
        state["lastfm"] = {"status": "found" if known else "not_found"}
        if known:
            state["lastfm"]["tags"] = len(tags)
        _source(record, "lastfm", sources.by_provider.get("lastfm"))
    except NotFound:
        state["lastfm"] = {"status": "not_found"}
    except TunegateError as exc:
        stage.failed(record, exc)


def _source(record: dict[str, Any], provider: str, source: str | None) -> None:
    if source is not None:
        record["sources"][provider] = source


async def _staged_row(run: _Run, row: Row) -> dict[str, Any]:
    record = _blank(row)
    counted = run.providers.musicbrainz is not None
    try:
        try:
            if row.error is not None:
                raise InvalidInput("row", row.error)
            validate.text(row.artist, "artist")
            validate.text(row.title, "title")
        except InvalidInput as exc:
            record["errors"]["input"] = _error(exc)
            record["status"] = "invalid"
            return record
        for name in ("spotify", "musicbrainz", "lastfm"):
            record["providers"][name] = {"status": "skipped"}
        p = run.providers
        lastfm = asyncio.ensure_future(_lastfm(run, row, record)) if p.lastfm is not None else None
        try:
            spotify = None
            if p.spotify is not None:
                spotify = asyncio.ensure_future(_spotify(run, row, record))
            isrc = row.isrc
            if p.musicbrainz is not None:
                if isrc is None and spotify is not None:
                    isrc = await spotify
                counted = False
                run.reached_musicbrainz()
                await _musicbrainz(run, row, isrc, record)
            if spotify is not None:
                await spotify
            if lastfm is not None:
                await lastfm
        finally:
            for task in (lastfm, spotify):
                if task is not None and not task.done():
                    task.cancel()
        record["status"] = _row_status(record)
        return record
    finally:
        if counted:
            run.reached_musicbrainz()


async def enrich_row(providers: Providers, row: Row) -> dict[str, Any]:
    """One row's record. Provider errors are recorded in it, never raised; bad input is
    recorded as ``invalid`` without a network call.

    ``providers`` says per provider ``found``, ``not_found``, ``error``, ``skipped`` (not
    configured) or ``pending`` (refused for longer than a run waits; ``retry_at`` says
    when it may be asked again). ``match`` gives, per provider found, the match score (0-1,
    from :mod:`tunegate.providers.matching`) and the method: ``id``, ``isrc``, ``search``
    or ``fallback`` (the design's: a title search in place of the ISRC lookup, when Spotify
    failed or its breaker is open, or MusicBrainz did not know the ISRC; the recording's
    ISRC then comes from MusicBrainz). ``sources`` says per
    provider that answered where the answer came from: ``api``, ``cache`` or ``stale``.
    """
    run = _Run(providers)
    run.before_mb = 1 if providers.musicbrainz is not None else 0
    return await _staged_row(run, row)


async def _safe_row(run: _Run, row: Row) -> dict[str, Any]:
    """One row's record, with a bug of ours recorded against the row instead of stopping
    the whole run (logged with its traceback, so it is not hidden)."""
    try:
        return await _staged_row(run, row)
    except Exception as exc:
        log.exception("row %d: unexpected error", row.index)
        record = _blank(row)
        record["errors"]["internal"] = _error(exc)
        record["providers"] = {}
        record["status"] = "failed"
        return record


# -- the run -----------------------------------------------------------------------------


def check_input(input_path: Path) -> None:
    """ConfigurationError unless ``input_path`` is a readable file."""
    if input_path.is_dir():
        raise ConfigurationError(f"{input_path}: is a directory, not an input file")
    if not input_path.is_file():
        raise ConfigurationError(f"{input_path}: no such input file")
    if not os.access(input_path, os.R_OK):
        raise ConfigurationError(f"{input_path}: not readable (permission denied)")


def _prepare(input_path: Path, output_path: Path) -> OutputIndex:
    check_input(input_path)
    if input_path.resolve() == output_path.resolve():
        raise ConfigurationError(f"{output_path}: the output cannot be the input file")
    return scan_output(output_path)


async def enrich(
    providers: Providers,
    input_path: Path,
    output_path: Path,
    *,
    concurrency: int = 8,
    retry_failed: bool = True,
    on_progress: Callable[[dict[str, Any] | None], None] | None = None,
    window: int | None = None,
    batching: bool = True,
    timeouts: Mapping[str, float] | None = None,
    isrc_batch_size: int | None = None,
) -> EnrichSummary:
    """Enrich every row of ``input_path`` into ``output_path`` (resuming where it stopped).

    A stage per provider: ``concurrency`` calls in flight each at Spotify and Last.fm,
    MusicBrainz's ISRC lookups in batches (``batching=False``: one ``/ws/2/isrc`` request
    a row, the baseline), at most ``window`` rows in flight (default
    :data:`DEFAULT_WINDOW`), ``timeouts`` per provider (default :data:`STAGE_TIMEOUTS`),
    ``isrc_batch_size`` ISRCs a MusicBrainz search (1 to 200; default the client's, 50).
    ``on_progress`` is called once per row: with the new record, or None for a skipped row.
    """
    if concurrency < 1:
        raise ConfigurationError("concurrency must be at least 1")
    if window is not None and window < 1:
        raise ConfigurationError("window must be at least 1")
    unknown = set(timeouts or ()) - set(STAGE_TIMEOUTS)
    if unknown or any(not t > 0 for t in (timeouts or {}).values()):
        raise ConfigurationError(
            f"timeouts: positive seconds for {', '.join(STAGE_TIMEOUTS)}, got {timeouts!r}"
        )
    if isrc_batch_size is not None:
        check_isrc_batch_size(isrc_batch_size)
    size = window if window is not None else max(DEFAULT_WINDOW, 4 * concurrency)
    batches = _isrc_batching(providers.musicbrainz, batching, isrc_batch_size)
    with _locked(output_path), batches:
        run = _Run(providers, concurrency, timeouts, steer=True, batching=batching)
        return await _run(run, input_path, output_path, size, retry_failed, on_progress)


@contextmanager
def _isrc_batching(mb: Any, on: bool, size: int | None = None) -> Iterator[None]:
    """The run's ISRC batching on the MusicBrainz client (a longer linger: Spotify brings
    ISRCs over time), put back as it was afterwards."""
    if mb is None or not hasattr(mb, "configure_isrc_batching"):
        yield
        return
    from tunegate.clients._isrc_batch import coalescer_for

    coalescer = coalescer_for(mb)
    before = (coalescer.linger, coalescer.enabled, coalescer.size)
    mb.configure_isrc_batching(linger=ISRC_LINGER, enabled=on, size=size)
    try:
        yield
    finally:
        mb.configure_isrc_batching(linger=before[0], enabled=before[1], size=before[2])
        mb.flush_isrc_batch(False)


async def _run(
    run: _Run,
    input_path: Path,
    output_path: Path,
    window: int,
    retry_failed: bool,
    on_progress: Callable[[dict[str, Any] | None], None] | None,
) -> EnrichSummary:
    started = time.monotonic()
    index = _prepare(input_path, output_path)
    summary = EnrichSummary()
    writer = _Writer(output_path)
    # Rewrite at the end when the file is not one record per row in row order: rows
    # finish out of order, and retried rows supersede their earlier record.
    untidy = not index.ordered
    last = len(index.status) - 1
    room = asyncio.Semaphore(window)
    tasks: set[asyncio.Task[None]] = set()
    broken: list[BaseException] = []  # a row task that died (the disk is full, say)

    async def one(row: Row) -> None:
        nonlocal untidy, last
        try:
            record = await _safe_row(run, row)
            if row.index <= last:
                untidy = True
            last = max(last, row.index)
            writer.write(record)
            summary.status[record["status"]] += 1
            for name, part in record["providers"].items():
                counts = summary.providers.setdefault(name, dict.fromkeys(PROVIDER_STATUSES, 0))
                counts[part["status"]] += 1
            if on_progress is not None:
                on_progress(record)
        finally:
            room.release()

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            broken.append(task.exception())  # type: ignore[arg-type]

    try:
        for row in read_rows(input_path):
            if broken:
                raise broken[0]
            summary.total += 1
            previous = index.last_status(row.index)
            if previous is not None and index.digest[row.index] != row.digest:
                raise ConfigurationError(
                    f"row {row.index} of {input_path} differs from the output's record of it: "
                    f"{output_path} belongs to another input; choose another output file"
                )
            if previous in _FINAL or (previous is not None and not retry_failed):
                summary.skipped += 1
                if on_progress is not None:
                    on_progress(None)
                continue
            if room.locked():  # the window is full: no new row will bring an ISRC soon
                run.reader_blocked = True
                run.maybe_flush()
            await room.acquire()
            run.reader_blocked = False
            if run.providers.musicbrainz is not None:
                run.started()
            task = asyncio.create_task(one(row))
            tasks.add(task)
            task.add_done_callback(finished)
            if summary.total % 64 == 0:
                await asyncio.sleep(0)  # let rows start while the input is read
        run.reader_done = True
        run.maybe_flush()
        while tasks and not broken:
            await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
        if broken:
            raise broken[0]
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
    if untidy:
        _compact(output_path)
        summary.compacted = True
    final = scan_output(output_path)
    summary.records = sum(
        1 for i in range(min(summary.total, len(final.status))) if final.status[i]
    )
    if final.records != summary.records or len(final.status) > summary.total:
        summary.records = -1  # records beyond the input or doubled: not one per row
    summary.seconds = time.monotonic() - started
    return summary
