"""The ``tunegate`` command."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    help="tunegate: a resilient gateway to the Spotify, MusicBrainz and Last.fm APIs.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """tunegate: a resilient gateway to the Spotify, MusicBrainz and Last.fm APIs."""


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
    catalog_size: Annotated[int, typer.Option(help="Number of tracks in the catalogue.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the catalogue and of the faults.")] = 0,
    tls: Annotated[
        bool, typer.Option(help="Serve HTTPS with a certificate made on the fly.")
    ] = False,
    faults: Annotated[
        str | None,
        typer.Option(help="Fault rules: the compact form, JSON, or a path to a JSON file."),
    ] = None,
    rate_limits: Annotated[
        bool, typer.Option(help="Enforce each provider's quota (off for load tests).")
    ] = True,
) -> None:
    """Serve the provider emulator (Spotify, MusicBrainz, Last.fm) until stopped."""
    from tunegate.emulator import Emulator

    spec: str | None = faults
    if faults and not faults.lstrip().startswith(("{", "[")) and Path(faults).is_file():
        spec = Path(faults).read_text(encoding="utf-8")
    try:
        emu = Emulator(
            catalog_size=catalog_size,
            seed=seed,
            tls=tls,
            faults=spec,
            host=host,
            port=port,
            rate_limits=rate_limits,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with emu:
        urls = emu.urls
        typer.echo(f"tunegate emulator: {emu.catalog.size} tracks, seed {seed}")
        typer.echo(f"spotify      {urls.spotify}  (token: {urls.spotify_token})")
        typer.echo(f"musicbrainz  {urls.musicbrainz}")
        typer.echo(f"lastfm       {urls.lastfm}")
        typer.echo(f"admin        {urls.admin}")
        if emu.ca_path:
            typer.echo(f"ca           {emu.ca_path}")
        typer.echo("Press Ctrl+C to stop.")
        while not stop.wait(0.5):
            pass


SANDBOX_DIR = Path(".tunegate") / "sandbox"


@app.command()
def enrich(
    input_path: Annotated[
        Path | None,
        typer.Argument(
            metavar="INPUT",
            help="CSV with artist and title columns, or JSON Lines with those keys. "
            "With --sandbox and no INPUT, a sample of the emulator's catalogue.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="JSON Lines output; resumed if it exists. "
            "Default: INPUT's name with .enriched.jsonl.",
        ),
    ] = None,
    sandbox: Annotated[
        bool, typer.Option(help="Run against the built-in emulator (no credentials needed).")
    ] = False,
    rows: Annotated[int, typer.Option(help="Rows of the sandbox's sample input.")] = 100,
    concurrency: Annotated[int, typer.Option(help="Rows enriched at the same time.")] = 8,
    cache: Annotated[
        str | None,
        typer.Option(
            help="SQLite cache file, or 'memory'. Default: ~/.cache/tunegate/cache.db "
            "(the sandbox keeps its own beside its files); with --redis, Redis.",
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis",
            envvar="TUNEGATE_REDIS_URL",
            help="Share cache, rate limits and breakers with other workers through Redis.",
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="On resume, try again the rows that had errors.")
    ] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary.")] = False,
) -> None:
    """Enrich (artist, title) rows with Spotify, MusicBrainz and Last.fm data.

    Resumable: run it again with the same output to finish an interrupted run. Credentials
    come from SPOTIFY_CLIENT_ID / SPOTIFY_CLIENT_SECRET, MUSICBRAINZ_USER_AGENT and
    LASTFM_API_KEY; providers without credentials are skipped.
    """
    import asyncio
    import contextlib
    import dataclasses
    import logging

    from rich.console import Console
    from rich.logging import RichHandler

    from tunegate.cache import CacheManager
    from tunegate.cache.sqlite import default_sqlite_path
    from tunegate.clients import Settings
    from tunegate.exceptions import ConfigurationError
    from tunegate.sandbox import sandbox as start_sandbox
    from tunegate.sandbox import write_sample_input

    err = Console(stderr=True)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
        force=True,
    )
    with contextlib.ExitStack() as stack:
        if sandbox:
            emu, settings = stack.enter_context(start_sandbox())
            if input_path is None:
                sample = SANDBOX_DIR / f"input-{rows}.csv"
                input_path = write_sample_input(emu, sample, rows=rows)
                output = output or SANDBOX_DIR / f"enriched-{rows}.jsonl"
            cache = cache or str(SANDBOX_DIR / "cache.db")
        else:
            settings = Settings.from_env()
        if input_path is None:
            raise typer.BadParameter("give an INPUT file, or use --sandbox", param_hint="INPUT")
        if output is None:
            output = input_path.with_name(input_path.stem + ".enriched.jsonl")
        if redis_url:
            settings = dataclasses.replace(settings, redis_url=redis_url)
        cache_manager = None
        if cache == "memory":
            cache_manager = CacheManager()
        elif cache is not None or not redis_url:
            cache_manager = CacheManager.sqlite(Path(cache) if cache else default_sqlite_path())
        try:
            summary = asyncio.run(  # Ctrl+C: KeyboardInterrupt below
                _enrich(
                    settings,
                    cache_manager,
                    input_path,
                    output,
                    concurrency,
                    retry_failed,
                    quiet,
                    err,
                )
            )
        except ConfigurationError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print(
                f"interrupted: the rows done so far are in {output}; "
                "run the same command again to resume"
            )
            raise typer.Exit(130) from None
    if not quiet:
        failed = summary.status["failed"] + summary.status["partial"]
        err.print(
            f"{summary.total} rows in {summary.seconds:.1f}s: {summary.status['ok']} ok, "
            f"{summary.status['partial']} partial, {summary.status['failed']} failed, "
            f"{summary.status['invalid']} invalid, {summary.skipped} already done -> {output}"
        )
        if failed:
            err.print("Rows with errors keep their error in the output; run again to retry them.")


async def _enrich(
    settings: Any,
    cache_manager: Any,
    input_path: Path,
    output: Path,
    concurrency: int,
    retry_failed: bool,
    quiet: bool,
    err: Any,
) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from tunegate.clients import AsyncGateway
    from tunegate.enrich import Providers, count_rows
    from tunegate.enrich import enrich as run

    counts = {"ok": 0, "partial": 0, "failed": 0, "invalid": 0, "skipped": 0}
    progress = Progress(
        TextColumn("[bold]enrich"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
    )

    def text() -> str:
        return " ".join(f"{k} {v}" for k, v in counts.items() if v)

    async with AsyncGateway(settings, cache_manager=cache_manager) as gateway:
        providers = Providers.of(gateway)
        with progress:
            task = progress.add_task("enrich", total=count_rows(input_path), counts="")

            def on_progress(record: dict[str, Any] | None) -> None:
                counts["skipped" if record is None else record["status"]] += 1
                progress.update(task, advance=1, counts=text())

            summary = await run(
                providers,
                input_path,
                output,
                concurrency=concurrency,
                retry_failed=retry_failed,
                on_progress=on_progress,
            )
        if not quiet:
            stats = gateway.get_stats()
            cache_stats = stats.pop("cache")
            parts = [f"{name}: {s.get('api_calls', 0)} calls" for name, s in sorted(stats.items())]
            err.print(
                "upstream "
                + ", ".join(parts)
                + f"; cache hit ratio {cache_stats.get('hit_ratio', 0.0):.0%}"
            )
    return summary


def main() -> None:
    app()


if __name__ == "__main__":
    main()
