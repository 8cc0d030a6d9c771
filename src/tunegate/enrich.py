"""``tunegate enrich``: join each (artist, title) row to Spotify, MusicBrainz and Last.fm.

For every input row: Spotify ``search_track`` gives the track and its ISRC; MusicBrainz
``lookup_isrc`` gives the recording (``search_recording`` when Spotify had no ISRC or
MusicBrainz does not know it); Last.fm ``get_track_tags`` gives the tags. One provider
failing leaves the others' answers in the record, with the error named.

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
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tunegate.clients import AsyncGateway
from tunegate.exceptions import ConfigurationError, InvalidInput, NotFound, TunegateError
from tunegate.providers import validate

__all__ = [
    "EnrichSummary",
    "OutputIndex",
    "Providers",
    "Row",
    "count_rows",
    "enrich",
    "enrich_row",
    "read_rows",
    "scan_output",
]

log = logging.getLogger("tunegate.enrich")

ARTIST_COLUMNS = ("artist", "artist_name", "artists")
TITLE_COLUMNS = ("title", "track", "track_name", "name", "song")
STATUSES = ("ok", "partial", "failed", "invalid")
_FINAL = frozenset({"ok", "invalid"})  # never tried again on resume
_FSYNC_EVERY = 1.0  # seconds between fsyncs of the output (a flush happens per record)


@dataclass(frozen=True)
class Row:
    """One input row; ``index`` counts data rows from 0 and identifies the row on resume."""

    index: int
    artist: str
    title: str

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


# -- input -------------------------------------------------------------------------------


def _column(header: list[str], names: tuple[str, ...], what: str, path: Path) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    raise ConfigurationError(
        f"{path}: no {what} column; the header must name one of {', '.join(names)} "
        f"(found: {', '.join(header) or 'nothing'})"
    )


def read_rows(path: Path) -> Iterator[Row]:
    """Rows of a CSV file with a header (``artist`` and ``title`` columns, any case) or of a
    JSON Lines file (``.jsonl``/``.ndjson``) with ``artist`` and ``title`` keys. UTF-8."""
    try:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            yield from _jsonl_rows(path)
        else:
            yield from _csv_rows(path)
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{path}: not UTF-8 text (byte {exc.start} of a line); save it as UTF-8"
        ) from None


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
                raise ConfigurationError(f"{path}:{number}: not a JSON object")
            yield Row(index, str(item.get("artist") or ""), str(item.get("title") or ""))
            index += 1


def _csv_rows(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        a = _column(header, ARTIST_COLUMNS, "artist", path)
        t = _column(header, TITLE_COLUMNS, "title", path)
        index = 0
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            cells += [""] * (max(a, t) + 1 - len(cells))
            yield Row(index, cells[a], cells[t])
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
    """Hold ``.<name>.lock`` beside the output for the run (released if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigurationError(
                f"{path}: another tunegate enrich is writing it; wait for it or choose "
                "another output file"
            ) from None
        yield
    finally:
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
        "length": recording.get("length"),
        "first_release_date": recording.get("first-release-date"),
    }


def _blank(row: Row) -> dict[str, Any]:
    return {
        "row": row.index,
        "input": {"artist": row.artist, "title": row.title},
        "spotify": None,
        "musicbrainz": None,
        "lastfm_tags": None,
        "errors": {},
    }


async def enrich_row(providers: Providers, row: Row) -> dict[str, Any]:
    """One row's record. Provider errors are recorded in it, never raised; bad input is
    recorded as ``invalid`` without a network call."""
    record = _blank(row)
    errors: dict[str, str] = record["errors"]
    try:
        validate.text(row.artist, "artist")
        validate.text(row.title, "title")
    except InvalidInput as exc:
        errors["input"] = _error(exc)
        record["status"] = "invalid"
        return record
    attempted = 0

    isrc: str | None = None
    if providers.spotify is not None:
        attempted += 1
        try:
            record["spotify"] = _spotify_part(
                await providers.spotify.search_track(row.artist, row.title)
            )
            isrc = record["spotify"]["isrc"] if record["spotify"] else None
        except TunegateError as exc:
            errors["spotify"] = _error(exc)

    if providers.musicbrainz is not None:
        attempted += 1
        try:
            # The ISRC is the join key; a title search is the fallback when there is none.
            recording = await providers.musicbrainz.lookup_isrc(isrc) if isrc else None
            if recording is None:
                recording = await providers.musicbrainz.search_recording(row.artist, row.title)
            record["musicbrainz"] = _musicbrainz_part(recording)
        except NotFound:
            record["musicbrainz"] = None
        except TunegateError as exc:
            errors["musicbrainz"] = _error(exc)

    if providers.lastfm is not None:
        attempted += 1
        try:
            tags = await providers.lastfm.get_track_tags(row.artist, row.title)
            record["lastfm_tags"] = list(tags)
        except TunegateError as exc:
            errors["lastfm"] = _error(exc)

    record["status"] = "ok" if not errors else "failed" if len(errors) == attempted else "partial"
    return record


async def _safe_row(providers: Providers, row: Row) -> dict[str, Any]:
    """:func:`enrich_row`, with a bug of ours recorded against the row instead of stopping
    the whole run (logged with its traceback, so it is not hidden)."""
    try:
        return await enrich_row(providers, row)
    except Exception as exc:
        log.exception("row %d: unexpected error", row.index)
        record = _blank(row)
        record["errors"]["internal"] = _error(exc)
        record["status"] = "failed"
        return record


# -- the run -----------------------------------------------------------------------------


def _prepare(input_path: Path, output_path: Path) -> OutputIndex:
    if not input_path.is_file():
        raise ConfigurationError(f"{input_path}: no such input file")
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
) -> EnrichSummary:
    """Enrich every row of ``input_path`` into ``output_path`` (resuming where it stopped).

    ``on_progress`` is called once per row: with the new record, or None for a skipped row.
    """
    if concurrency < 1:
        raise ConfigurationError("concurrency must be at least 1")
    with _locked(output_path):
        return await _run(
            providers, input_path, output_path, concurrency, retry_failed, on_progress
        )


async def _run(
    providers: Providers,
    input_path: Path,
    output_path: Path,
    concurrency: int,
    retry_failed: bool,
    on_progress: Callable[[dict[str, Any] | None], None] | None,
) -> EnrichSummary:
    started = time.monotonic()
    index = _prepare(input_path, output_path)
    summary = EnrichSummary()
    writer = _Writer(output_path)
    queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=concurrency * 2)
    # Rewrite at the end when the file is not one record per row in row order: workers
    # finish out of order, and retried rows supersede their earlier record.
    untidy = not index.ordered
    last = len(index.status) - 1

    async def worker() -> None:
        nonlocal untidy, last
        while (row := await queue.get()) is not None:
            record = await _safe_row(providers, row)
            if row.index <= last:
                untidy = True
            last = max(last, row.index)
            writer.write(record)
            summary.status[record["status"]] += 1
            if on_progress is not None:
                on_progress(record)

    async def feed(row: Row | None) -> None:
        # A worker that died (the disk is full, say) must stop the run, not leave the
        # producer waiting for queue room forever.
        put = asyncio.ensure_future(queue.put(row))
        done, _ = await asyncio.wait({put, *workers}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            await asyncio.gather(*workers)  # raises the dead worker's error

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        for row in read_rows(input_path):
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
            await feed(row)
        for _ in workers:
            await feed(None)
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        writer.close()
    if untidy:
        _compact(output_path)
        summary.compacted = True
    summary.seconds = time.monotonic() - started
    return summary
