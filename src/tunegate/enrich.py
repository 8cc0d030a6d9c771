"""``tunegate enrich``: join each (artist, title) row to Spotify, MusicBrainz and Last.fm.

For every input row: Spotify ``search_track`` gives the track and its ISRC; MusicBrainz
``lookup_isrc`` gives the recording (``search_recording`` when Spotify had no ISRC or
MusicBrainz does not know it); Last.fm ``get_track_tags`` gives the tags. One provider
failing leaves the others' answers in the record, with the error named.

The output is JSON Lines, one record per row, appended as each row finishes, so a killed run
loses at most the rows in flight. A re-run resumes: rows whose last record is ``ok`` are
skipped, the others are tried again and their new record supersedes the old one. At the end
of a run the file is rewritten, when needed, as one record per row in row order (to a
temporary file, then an atomic rename). A torn last line (a kill in the middle of a write)
is cut off on resume.
"""

from __future__ import annotations

import asyncio
import csv
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tunegate.clients import AsyncGateway
from tunegate.exceptions import ConfigurationError, InvalidInput, NotFound, TunegateError

__all__ = ["EnrichSummary", "Providers", "Row", "enrich", "enrich_row", "read_rows", "scan_output"]

ARTIST_COLUMNS = ("artist", "artist_name", "artists")
TITLE_COLUMNS = ("title", "track", "track_name", "name", "song")
_FSYNC_EVERY = 1.0  # seconds between fsyncs of the output (a flush happens per record)


@dataclass(frozen=True)
class Row:
    """One input row; ``index`` counts data rows from 0 and identifies the row on resume."""

    index: int
    artist: str
    title: str


@dataclass
class EnrichSummary:
    """What a run did; ``status`` counts the records written by this run."""

    total: int = 0
    skipped: int = 0
    status: dict[str, int] = field(default_factory=lambda: {"ok": 0, "partial": 0, "failed": 0})
    compacted: bool = False
    seconds: float = 0.0


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
    JSON Lines file (``.jsonl``/``.ndjson``) with ``artist`` and ``title`` keys."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open("rb") as f:
            index = 0
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    item = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise ConfigurationError(f"{path}:{number}: not a JSON object") from None
                if not isinstance(item, dict):
                    raise ConfigurationError(f"{path}:{number}: not a JSON object")
                yield Row(index, str(item.get("artist") or ""), str(item.get("title") or ""))
                index += 1
        return
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


def scan_output(path: Path) -> tuple[dict[int, dict[str, Any]], int]:
    """The last record of every row in an existing output, and how many records it has.

    A torn final line (no newline: the writer was killed mid-write) is cut off the file.
    """
    latest: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return latest, 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as f:
            f.truncate(end)
    count = 0
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            latest[int(record["row"])] = record
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ConfigurationError(
                f"{path}:{number}: not a tunegate enrich record; choose another output file"
            ) from None
        count += 1
    return latest, count


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


async def enrich_row(providers: Providers, row: Row) -> dict[str, Any]:
    """One row's record. Provider errors are recorded in it, never raised."""
    record: dict[str, Any] = {
        "row": row.index,
        "input": {"artist": row.artist, "title": row.title},
        "spotify": None,
        "musicbrainz": None,
        "lastfm_tags": None,
        "errors": {},
    }
    errors: dict[str, str] = record["errors"]
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


def _invalid_record(row: Row, exc: InvalidInput) -> dict[str, Any]:
    return {
        "row": row.index,
        "input": {"artist": row.artist, "title": row.title},
        "spotify": None,
        "musicbrainz": None,
        "lastfm_tags": None,
        "errors": {"input": _error(exc)},
        "status": "failed",
    }


def _check_input(row: Row) -> InvalidInput | None:
    from tunegate.providers import validate

    try:
        validate.text(row.artist, "artist")
        validate.text(row.title, "title")
    except InvalidInput as exc:
        return exc
    return None


class _Writer:
    """Appends records; flushes each, fsyncs at most once a second and at the end."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
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


def _compact(path: Path) -> None:
    """Rewrite ``path`` with one record per row, in row order, atomically."""
    latest, _ = scan_output(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        for index in sorted(latest):
            f.write(orjson.dumps(latest[index]) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _prepare(input_path: Path, output_path: Path) -> tuple[dict[int, dict[str, Any]], int]:
    if not input_path.is_file():
        raise ConfigurationError(f"{input_path}: no such input file")
    return scan_output(output_path)


async def _pending(rows: Iterator[Row], done: dict[int, dict[str, Any]]) -> AsyncIterator[Row]:
    for row in rows:
        previous = done.get(row.index)
        if previous is not None and previous.get("input") != {
            "artist": row.artist,
            "title": row.title,
        }:
            raise ConfigurationError(
                f"row {row.index} of the input differs from the output's record of it: the "
                "output belongs to another input; choose another output file"
            )
        yield row


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
    started = time.monotonic()
    done, records_before = _prepare(input_path, output_path)
    summary = EnrichSummary()
    writer = _Writer(output_path)
    queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=concurrency * 2)
    # Rewrite at the end when the file is not one record per row in row order: workers
    # finish out of order, and retried rows supersede their earlier record.
    untidy = records_before > len(done)
    last = max(done, default=-1)

    async def worker() -> None:
        nonlocal untidy, last
        while (row := await queue.get()) is not None:
            invalid = _check_input(row)
            record = _invalid_record(row, invalid) if invalid else await enrich_row(providers, row)
            if row.index in done or row.index < last:
                untidy = True
            last = max(last, row.index)
            writer.write(record)
            summary.status[record["status"]] += 1
            if on_progress is not None:
                on_progress(record)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        async for row in _pending(read_rows(input_path), done):
            summary.total += 1
            previous = done.get(row.index)
            if previous is not None and (previous["status"] == "ok" or not retry_failed):
                summary.skipped += 1
                if on_progress is not None:
                    on_progress(None)
                continue
            await queue.put(row)
        for _ in workers:
            await queue.put(None)
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


def count_rows(path: Path) -> int:
    """How many rows :func:`read_rows` will give (for the progress bar's total)."""
    return sum(1 for _ in read_rows(path))
