"""What ``tunegate enrich`` shows and writes around the run: progress (a rich bar with a
line per provider on a terminal, a plain line every few seconds elsewhere), logging in text
or JSON, the end summary as text and as data, and the CSV flattening of records."""

from __future__ import annotations

import asyncio
import csv
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from tunegate.observability import JsonFormatter, current_correlation_id

__all__ = [
    "CSV_COLUMNS",
    "ProgressView",
    "Tally",
    "console",
    "flatten",
    "provider_figures",
    "setup_logging",
    "summary_data",
    "summary_lines",
    "write_csv",
]

PROVIDERS = ("spotify", "musicbrainz", "lastfm")
SOURCES = ("api", "cache", "stale")


def console() -> Console:
    """stderr; when it is not a terminal nothing is wrapped (one record, one line)."""
    err = Console(stderr=True)
    if not err.is_terminal:
        err = Console(stderr=True, soft_wrap=True, width=10_000, no_color=True)
    return err


class _JsonLines(JsonFormatter):
    """The library's JSON lines, with the run's correlation id on every record (also on the
    ones logged outside a pipeline call) and the progress figures as data."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = current_correlation_id()
        text = super().format(record)
        extra = {k: getattr(record, k) for k in ("progress", "summary") if hasattr(record, k)}
        if not extra:
            return text
        return orjson.dumps({**orjson.loads(text), **extra}).decode()


def setup_logging(err: Console, log_format: str) -> None:
    """WARNING and up from the library; INFO from ``tunegate.cli`` (the progress lines)."""
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonLines())
    elif err.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=err, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("tunegate.cli").setLevel(logging.INFO)


def provider_figures(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per provider, from ``AsyncGateway.get_stats()``: the figures a summary shows."""
    out: dict[str, dict[str, Any]] = {}
    for name in PROVIDERS:
        s = stats.get(name)
        if not isinstance(s, dict):
            continue
        breaker = s.get("circuit_breaker") or {}
        out[name] = {
            "calls": s.get("api_calls", 0),
            "cache_hits": s.get("cache_hits", 0) + s.get("negative_hits", 0),
            "cache_misses": s.get("cache_misses", 0),
            "cache_hit_ratio": round(s.get("cache_hit_ratio", 0.0), 4),
            "stale_served": s.get("stale_served", 0),
            "retries": s.get("retries", 0),
            "api_errors": s.get("api_errors", 0),
            "breaker_rejections": s.get("breaker_rejections", 0),
            "breaker_state": breaker.get("state"),
        }
    return out


class Tally:
    """What the run's records and breakers say, per provider: errors by kind, where the
    answers came from (the records' ``sources``), and breaker openings (a breaker listener
    on the gateway's registry: openings, not refusals)."""

    def __init__(self) -> None:
        self.errors: dict[str, dict[str, int]] = {}
        self.sources: dict[str, dict[str, int]] = {}
        self.breaker_opened: dict[str, int] = {}

    def record(self, record: dict[str, Any] | None) -> None:
        if record is None:
            return
        for name, part in record.get("providers", {}).items():
            kind = part.get("error")
            if kind:
                by_kind = self.errors.setdefault(name, {})
                by_kind[kind] = by_kind.get(kind, 0) + 1
        for name, source in (record.get("sources") or {}).items():
            counts = self.sources.setdefault(name, dict.fromkeys(SOURCES, 0))
            counts[source] = counts.get(source, 0) + 1

    def on_breaker(self, name: str, old: Any, new: Any) -> None:
        if getattr(new, "value", new) == "open":
            self.breaker_opened[name] = self.breaker_opened.get(name, 0) + 1

    def breakers(self, registry: Any) -> dict[str, dict[str, Any]]:
        """Per breaker of the run: openings seen and the state at the end."""
        return {
            name: {
                "opened": self.breaker_opened.get(name, 0),
                "state": registry[name].get_stats()["state"],
            }
            for name in registry
        }


class ProgressView:
    """The live view. On a terminal: a rich bar and a line per provider. Elsewhere: a
    plain log line every ``every`` seconds (and none of rich's redrawing)."""

    def __init__(
        self,
        err: Console,
        total: int,
        stats: Any,
        *,
        quiet: bool = False,
        every: float = 5.0,
    ) -> None:
        self.counts: dict[str, int] = {}
        self.pending: dict[str, int] = dict.fromkeys(PROVIDERS, 0)
        self.done = 0
        self.total = total
        self._stats = stats  # () -> gateway stats
        self._every = every
        self._quiet = quiet
        self._started = time.monotonic()
        self._log = logging.getLogger("tunegate.cli")
        self._live = err.is_terminal and not quiet
        view = self

        class _Progress(Progress):
            def get_renderables(self) -> Iterable[RenderableType]:
                yield self.make_tasks_table(self.tasks)
                for line in view.provider_lines():
                    yield Text(line)

        self._progress = _Progress(
            TextColumn("[bold]enrich"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not self._live,
        )
        self._task: TaskID = self._progress.add_task("enrich", total=total, counts="")

    def live(self) -> dict[str, dict[str, Any]]:
        """Per provider now: calls/s since the start, cache hit ratio, breaker, pending."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return {
            name: {
                "calls_per_s": round(f["calls"] / elapsed, 2),
                "cache_hit_ratio": f["cache_hit_ratio"],
                "breaker_state": f["breaker_state"],
                "pending": self.pending.get(name, 0),
            }
            for name, f in provider_figures(self._stats()).items()
        }

    def provider_lines(self) -> Iterator[str]:
        for name, f in self.live().items():
            line = (
                f"  {name:<11} {f['calls_per_s']:5.1f} calls/s  "
                f"cache {f['cache_hit_ratio']:.0%}  breaker {f['breaker_state'] or '-'}"
            )
            if f["pending"]:
                line += f"  paused ({f['pending']} pending)"
            yield line

    def counts_text(self) -> str:
        return " ".join(f"{k} {v}" for k, v in self.counts.items() if v)

    def record(self, record: dict[str, Any] | None) -> None:
        key = "already_done" if record is None else record["status"]
        self.counts[key] = self.counts.get(key, 0) + 1
        if record is not None:
            for name, part in record.get("providers", {}).items():
                if part.get("status") == "pending":
                    self.pending[name] = self.pending.get(name, 0) + 1
        self.done += 1
        self._progress.update(self._task, advance=1, counts=self.counts_text())

    def line(self) -> str:
        parts = [f"enrich {self.done}/{self.total}", self.counts_text() or "-"]
        parts += [" ".join(p.split()) for p in self.provider_lines()]
        return " | ".join(parts)

    def figures(self) -> dict[str, Any]:
        """The progress line as data (``--log-format json``)."""
        return {
            "done": self.done,
            "total": self.total,
            "status": dict(self.counts),
            "providers": self.live(),
        }

    async def ticker(self) -> None:
        """Without a terminal: a progress line every ``every`` seconds until cancelled."""
        if self._live or self._quiet:
            return
        while True:
            await asyncio.sleep(self._every)
            self._log.info("%s", self.line(), extra={"progress": self.figures()})

    def __enter__(self) -> ProgressView:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)


def summary_data(
    summary: Any,
    stats: dict[str, Any],
    output: Path,
    tally: Tally,
    breakers: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The end summary as data (``--summary-json``)."""
    figures = provider_figures(stats)
    seconds = max(summary.seconds, 1e-9)
    for name, f in figures.items():
        f["rate_per_s"] = round(f["calls"] / seconds, 3)
        f["statuses"] = summary.providers.get(name, {})
        f["pauses"] = summary.providers.get(name, {}).get("pending", 0)
        f["errors_by_kind"] = tally.errors.get(name, {})
        f["sources"] = tally.sources.get(name, dict.fromkeys(SOURCES, 0))
        own = breakers.get(name, {})
        f["breaker_opened"] = own.get("opened", 0)
        f["breaker_state"] = own.get("state", f["breaker_state"])
    return {
        "rows": summary.total,
        "already_done": summary.skipped,
        "status": dict(summary.status),
        "records": summary.records,
        "one_record_per_row": summary.complete,
        "elapsed_s": round(summary.seconds, 3),
        "rows_per_s": round((summary.total - summary.skipped) / seconds, 3),
        "output": str(output),
        "correlation_id": current_correlation_id(),
        "providers": figures,
        "breakers": breakers,
    }


def summary_lines(data: dict[str, Any]) -> list[str]:
    s = data["status"]
    lines = [
        f"{data['rows']} rows in {data['elapsed_s']:.1f}s: "
        + ", ".join(f"{v} {k}" for k, v in s.items())
        + f", {data['already_done']} already done -> {data['output']}"
    ]
    for name, f in data["providers"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in f["errors_by_kind"].items()) or "none"
        line = (
            f"  {name}: {f['calls']} calls ({f['rate_per_s']:.1f}/s), "
            f"{f['cache_hits']} cache hits ({f['cache_hit_ratio']:.0%}), "
            f"{f['stale_served']} stale, {f['retries']} retries, {f['pauses']} pending; "
            f"breaker {f['breaker_state']}, opened {f['breaker_opened']}x, "
            f"{f['breaker_rejections']} rejected; errors: {kinds}"
        )
        for full, b in data.get("breakers", {}).items():  # e.g. spotify:accounts (tokens)
            owner, _, part = full.partition(":")
            if owner == name and part and (b["opened"] or b["state"] != "closed"):
                line += f"; {part} breaker {b['state']}, opened {b['opened']}x"
        if any(f["sources"].values()):
            line += "; answers from " + ", ".join(f"{k} {v}" for k, v in f["sources"].items())
        lines.append(line)
    if data["one_record_per_row"]:
        lines.append(f"checked: every one of the {data['rows']} input rows has one record")
    else:
        lines.append(f"CHECK FAILED: {data['rows']} input rows but {data['records']} with a record")
    return lines


CSV_COLUMNS = (
    "row",
    "line",
    "status",
    "artist",
    "title",
    "spotify_status",
    "spotify_id",
    "spotify_name",
    "spotify_artists",
    "spotify_album",
    "spotify_duration_ms",
    "isrc",
    "spotify_match_score",
    "spotify_match_method",
    "musicbrainz_status",
    "musicbrainz_id",
    "musicbrainz_title",
    "musicbrainz_length",
    "musicbrainz_first_release_date",
    "musicbrainz_match_score",
    "musicbrainz_match_method",
    "lastfm_status",
    "lastfm_tags",
    "errors",
)


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One CSV row of a record: lists joined with ``; ``, errors as ``provider: error``."""
    sp = record.get("spotify") or {}
    mb = record.get("musicbrainz") or {}
    st = record.get("providers") or {}
    match = record.get("match") or {}
    return {
        "row": record["row"],
        "line": record.get("line", ""),
        "status": record["status"],
        "artist": record["input"]["artist"],
        "title": record["input"]["title"],
        "spotify_status": (st.get("spotify") or {}).get("status", ""),
        "spotify_id": sp.get("id", ""),
        "spotify_name": sp.get("name", ""),
        "spotify_artists": "; ".join(sp.get("artists") or ()),
        "spotify_album": sp.get("album") or "",
        "spotify_duration_ms": sp.get("duration_ms") or "",
        "isrc": sp.get("isrc") or record["input"].get("isrc", ""),
        "spotify_match_score": (match.get("spotify") or {}).get("score", ""),
        "spotify_match_method": (match.get("spotify") or {}).get("method", ""),
        "musicbrainz_status": (st.get("musicbrainz") or {}).get("status", ""),
        "musicbrainz_id": mb.get("id", ""),
        "musicbrainz_title": mb.get("title") or "",
        "musicbrainz_length": mb.get("length") or "",
        "musicbrainz_first_release_date": mb.get("first_release_date") or "",
        "musicbrainz_match_score": (match.get("musicbrainz") or {}).get("score", ""),
        "musicbrainz_match_method": (match.get("musicbrainz") or {}).get("method", ""),
        "lastfm_status": (st.get("lastfm") or {}).get("status", ""),
        "lastfm_tags": "; ".join(record.get("lastfm_tags") or ()),
        "errors": "; ".join(f"{k}: {v}" for k, v in (record.get("errors") or {}).items()),
    }


def write_csv(journal: Path, path: Path) -> None:
    """``path`` as CSV from the JSON Lines ``journal`` (temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with journal.open("rb") as src, tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for line in src:
            if line.strip():
                writer.writerow(flatten(orjson.loads(line)))
    tmp.replace(path)
