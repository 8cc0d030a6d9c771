"""The ``tunegate`` command."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperOption

__all__ = ["app", "main"]


def _paragraphs(text: str) -> str:
    """Help text with each paragraph on one line: rich keeps hard line breaks, so lines
    broken for the source would come out ragged once it wraps them to the terminal."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n"))


EXIT_CODES = _paragraphs("""Exit codes: 0 every row ok or not_found; 1 some rows failed, partial,
pending, or invalid (unreadable); 2 usage, configuration or input-file error; 130
interrupted (Ctrl+C).""")

app = typer.Typer(
    help="tunegate: a resilient gateway to the Spotify, MusicBrainz and Last.fm APIs.\n\n"
    "Example: tunegate enrich --sandbox",
    no_args_is_help=True,
    add_completion=False,
    epilog=EXIT_CODES,
)


def _version(value: bool) -> None:
    if value:
        from tunegate import __version__

        typer.echo(f"tunegate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="TUNEGATE_CONFIG",
            help="TOML configuration file. Default: <user config dir>/tunegate/config.toml "
            "(see 'tunegate config show').",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """tunegate: a resilient gateway to the Spotify, MusicBrainz and Last.fm APIs.

    Example: tunegate enrich --sandbox
    """
    ctx.obj = config


def _load(ctx: typer.Context, **flags: Any) -> Any:
    """The effective configuration (flags > environment > file > defaults), or exit 2."""
    return _loaded(ctx, **flags).config


def _loaded(ctx: typer.Context, **flags: Any) -> Any:
    from tunegate.config import load
    from tunegate.exceptions import ConfigurationError

    try:
        return load(flags, ctx.find_root().obj)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


class _EmulatorCommand(TyperCommand):
    """Fills in ``--faults``' help (the emulator's FAULTS_HELP) only when help is shown, so
    the other commands never import the emulator."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from rich.markup import escape

        from tunegate.emulator import FAULTS_HELP

        for param in self.params:
            if param.name == "faults" and isinstance(param, TyperOption):
                param.help = escape(FAULTS_HELP)  # its [@P] is not rich markup
        super().format_help(ctx, formatter)


@app.command(cls=_EmulatorCommand)
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 0,
    catalog_size: Annotated[
        int, typer.Option(min=1, help="Number of tracks in the catalogue.")
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the catalogue and of the faults.")] = 0,
    tls: Annotated[
        bool, typer.Option(help="Serve HTTPS with a certificate made on the fly.")
    ] = False,
    faults: Annotated[
        str | None,
        typer.Option(help="Faults to inject (compact form, JSON, or a file of either)."),
    ] = None,
    rate_limits: Annotated[
        bool, typer.Option(help="Enforce each provider's quota (off for load tests).")
    ] = True,
    print_env_only: Annotated[
        bool,
        typer.Option(
            "--print-env",
            help="Print only the export block (then keep serving), for eval or a file.",
        ),
    ] = False,
) -> None:
    """Serve the provider emulator (Spotify, MusicBrainz, Last.fm) until stopped.

    It prints the credentials it accepts and an export block that points tunegate at it.

    Example: tunegate emulator --port 18777 --faults 'spotify:error=503@0.2'
    """
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
    try:
        emu.start()
    except RuntimeError as exc:  # the port is taken or not ours to bind: one line
        cause = exc.__cause__
        why = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc
        raise _fail(console_err(), f"emulator: cannot listen on {host}:{port}: {why}") from None
    try:
        urls = emu.urls
        env = emu.env()
        if print_env_only:
            typer.echo(emu.env_exports(), nl=False)
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
            return
        typer.echo(f"tunegate emulator: {emu.catalog.size} tracks, seed {seed}")
        typer.echo(f"spotify      {urls.spotify}  (token: {urls.spotify_token})")
        typer.echo(f"musicbrainz  {urls.musicbrainz}")
        typer.echo(f"lastfm       {urls.lastfm}")
        typer.echo(f"admin        {urls.admin}")
        if emu.ca_path:
            typer.echo(f"ca           {emu.ca_path}")
        typer.echo(
            f"credentials  spotify id {env['SPOTIFY_CLIENT_ID']} secret "
            f"{env['SPOTIFY_CLIENT_SECRET']}, lastfm key {env['LASTFM_API_KEY']}, "
            "any MusicBrainz User-Agent"
        )
        typer.echo("Point tunegate at it (paste into a shell):")
        typer.echo(emu.env_exports(), nl=False)
        typer.echo("Press Ctrl+C to stop.")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()


SANDBOX_DIR = Path(".tunegate") / "sandbox"

ENRICH_HELP = _paragraphs(f"""Enrich (artist, title) rows with Spotify, MusicBrainz and
Last.fm data.

Input: CSV, TSV (by extension or sniffed) or JSON Lines, or '-' for stdin (then give -o).
Columns (case, spaces and underscores ignored): artist / artist name / artists / performer;
title / track / track name / name / song; optional isrc and spotify_id. A row that cannot be
read (broken quoting, a bad JSON line, a wrong field count) becomes an 'invalid' record
naming its line, and the run goes on.

Each record has a status (ok, partial, not_found, failed, invalid), a status per provider
(found, not_found, error, skipped, pending) and the match score and method. Resumable: run
it again with the same output to finish an interrupted run.

Credentials come from SPOTIFY_CLIENT_ID / SPOTIFY_CLIENT_SECRET, MUSICBRAINZ_USER_AGENT and
LASTFM_API_KEY (providers without credentials are skipped); TUNEGATE_SPOTIFY_API_URL,
TUNEGATE_SPOTIFY_AUTH_URL, TUNEGATE_MUSICBRAINZ_URL and TUNEGATE_LASTFM_URL point them
elsewhere (see 'tunegate emulator'). Each setting can also live in the TOML file of --config
(see 'tunegate config show'); flags beat the environment, which beats the file.

{EXIT_CODES}

Example: tunegate enrich tracks.csv -o out.jsonl --summary-json summary.json

Example (tuning the stages): tunegate enrich tracks.csv --window 512 --isrc-batch-size 100
--stage-timeout musicbrainz=300 --ca-bundle /etc/ssl/proxy-ca.pem
""")


def _fail(err: Any, message: object, code: int = 2, *, json_logs: bool = False) -> typer.Exit:
    say(err, "json" if json_logs else "text", f"error: {message}", logging.ERROR)
    return typer.Exit(code)


def console_err() -> Any:
    from tunegate._cli_run import console

    return console()


def say(err: Any, log_format: str, text: str, level: int = logging.INFO) -> None:
    """A line for the user on stderr: as printed, or as a JSON log record."""
    if log_format == "json":
        logging.getLogger("tunegate.cli").log(level, "%s", text)
    else:
        err.print(text, markup=False, highlight=False)


MAX_WINDOW = 100_000
ISRC_BATCH_MAX = 200  # providers.musicbrainz.ISRC_BATCH_MAX (not imported: --help stays fast)
MAX_MEMBERS = 10_000  # clients.settings.MAX_MEMBERS (not imported, as above)
STAGES = ("spotify", "musicbrainz", "lastfm")


def _stage_timeouts(values: list[str]) -> dict[str, float] | None:
    """``--stage-timeout PROVIDER=SECONDS`` values as a mapping; BadParameter (exit 2)."""
    out: dict[str, float] = {}
    for value in values:
        name, sep, text = value.partition("=")
        try:
            seconds = float(text)
        except ValueError:
            seconds = float("nan")
        if not sep or name.strip() not in STAGES or not 0 < seconds <= 86_400:
            raise typer.BadParameter(
                f"{value!r}: give PROVIDER=SECONDS with PROVIDER one of {', '.join(STAGES)} "
                "and SECONDS above 0 (at most 86400), e.g. musicbrainz=300",
                param_hint="--stage-timeout",
            )
        out[name.strip()] = seconds
    return out or None


@app.command(help=ENRICH_HELP)
def enrich(
    ctx: typer.Context,
    input_path: Annotated[
        str | None,
        typer.Argument(
            metavar="INPUT",
            help="CSV, TSV or JSON Lines file, or '-' for stdin. "
            "With --sandbox and no INPUT, a sample of the emulator's catalogue.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file; resumed if it exists. Default: INPUT's name with "
            ".enriched.jsonl (or .enriched.csv with --format csv).",
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="jsonl (one record a line, the default) or csv (flattened columns; the "
            "resumable JSON Lines journal is kept beside it as .NAME.jsonl).",
        ),
    ] = None,
    sandbox: Annotated[
        bool, typer.Option(help="Run against the built-in emulator (no credentials needed).")
    ] = False,
    rows: Annotated[int, typer.Option(min=1, help="Rows of the sandbox's sample input.")] = 100,
    sandbox_seed: Annotated[
        int,
        typer.Option(
            min=0,
            help="Seed of the sandbox's catalogue. Runs with the same seed share one emulator "
            "(and its cache scope); another seed is a sandbox of its own.",
        ),
    ] = 0,
    concurrency: Annotated[
        int | None, typer.Option(help="Rows enriched at the same time (1-1024, default 8).")
    ] = None,
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
            help="Share cache, rate limits and breakers with other workers through Redis "
            "(or TUNEGATE_REDIS_URL).",
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="On resume, try again the rows that had errors.")
    ] = True,
    summary_json: Annotated[
        Path | None,
        typer.Option(help="Also write the end summary as JSON to this file."),
    ] = None,
    progress_every: Annotated[
        float | None,
        typer.Option(help="Seconds between progress lines without a terminal (default 5)."),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text (default), or json (one JSON object per log line).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress or summary.")] = False,
    window: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_WINDOW,
            help="Rows in flight at most (memory is bounded by it; default 256, or 4 x "
            "--concurrency if larger).",
        ),
    ] = None,
    isrc_batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=ISRC_BATCH_MAX,
            help="ISRCs per MusicBrainz recording search (default 50).",
        ),
    ] = None,
    isrc_batching: Annotated[
        bool,
        typer.Option(
            help="Batch MusicBrainz ISRC lookups into searches; --no-isrc-batching sends "
            "one /ws/2/isrc request a row (about 1 s a row at MusicBrainz's quota).",
        ),
    ] = True,
    stage_timeout: Annotated[
        list[str] | None,
        typer.Option(
            metavar="PROVIDER=SECONDS",
            help="Seconds one row's part at a provider may take in all, waits and retries "
            "included (repeatable; default spotify=60, musicbrainz=180, lastfm=60).",
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            envvar="TUNEGATE_CA_BUNDLE",
            help="PEM file of CAs to trust instead of the system's (a TLS proxy, the "
            "emulator's --tls CA); or TUNEGATE_CA_BUNDLE.",
        ),
    ] = None,
    members: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_MEMBERS,
            help="Processes sharing the quotas through --redis (default 1, or "
            "TUNEGATE_MEMBERS): if Redis is lost, each takes at most 1/N of each quota, "
            "even before it has seen the others in Redis.",
        ),
    ] = None,
) -> None:
    import asyncio
    import dataclasses
    import shutil
    import tempfile

    from tunegate._cli_run import console, setup_logging
    from tunegate.cache import CacheManager
    from tunegate.cache.sqlite import default_sqlite_path
    from tunegate.enrich import check_input
    from tunegate.exceptions import ConfigurationError
    from tunegate.observability import correlation_id
    from tunegate.sandbox import sandbox as start_sandbox
    from tunegate.sandbox import write_sample_input

    cfg = _load(
        ctx,
        format=output_format,
        concurrency=concurrency,
        cache=cache,
        redis_url=redis_url,
        progress_every=progress_every,
        log_format=log_format,
        members=members,
    )
    output_format, concurrency, cache = cfg.format, cfg.concurrency, cfg.cache
    progress_every, log_format = cfg.progress_every, cfg.log_format
    redis_url = cfg.secret("redis_url")
    timeouts = _stage_timeouts(stage_timeout or [])
    if isrc_batch_size is not None and not isrc_batching:
        raise typer.BadParameter(
            "has no effect with --no-isrc-batching", param_hint="--isrc-batch-size"
        )
    tuning = {
        "window": window,
        "batching": isrc_batching,
        "timeouts": timeouts,
        "isrc_batch_size": isrc_batch_size,
    }
    err = console()
    setup_logging(err, log_format)
    with contextlib.ExitStack() as stack:
        stack.enter_context(correlation_id())  # one id for the run's log lines and summary
        try:
            source: Path | None = None
            if input_path == "-":
                if output is None:
                    raise ConfigurationError("reading stdin ('-') needs an output: give -o FILE")
                spool = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "stdin"
                with spool.open("wb") as f:
                    shutil.copyfileobj(sys.stdin.buffer, f)
                source = spool
            elif input_path is not None:
                source = Path(input_path)
                check_input(source)
            if sandbox:
                emu, settings = stack.enter_context(start_sandbox(seed=sandbox_seed))
                if source is None:
                    source = write_sample_input(emu, SANDBOX_DIR / f"input-{rows}.csv", rows=rows)
                    output = output or SANDBOX_DIR / f"enriched-{rows}.{output_format}"
                if cache is None and not redis_url:
                    cache = str(SANDBOX_DIR / "cache.db")
            else:
                settings = cfg.client_settings()
            if source is None:
                raise typer.BadParameter("give an INPUT file, or use --sandbox", param_hint="INPUT")
            if output is None:
                output = source.with_name(source.stem + f".enriched.{output_format}")
            if summary_json is not None and summary_json.is_dir():
                raise ConfigurationError(f"{summary_json}: --summary-json is a directory")
            if redis_url:
                settings = dataclasses.replace(settings, redis_url=redis_url)
            if ca_bundle is not None:
                settings = dataclasses.replace(settings, ca_bundle=str(ca_bundle))
            settings = dataclasses.replace(settings, members=cfg.members)
            cache_manager = None
            if cache == "memory":
                cache_manager = CacheManager()
            elif cache is not None:
                cache_manager = CacheManager.sqlite(Path(cache))
            elif redis_url:
                cache_manager = CacheManager(redis_url)
            else:
                cache_manager = CacheManager.sqlite(default_sqlite_path())
            journal = output
            if output_format == "csv":
                journal = output.with_name(f".{output.name}.jsonl")
            data = asyncio.run(  # Ctrl+C: KeyboardInterrupt below
                _enrich(
                    settings,
                    cache_manager,
                    source,
                    journal,
                    concurrency,
                    retry_failed,
                    quiet,
                    progress_every,
                    err,
                    tuning,
                )
            )
            data["output"] = str(output)
            if sandbox:  # the emulator's own count of what reached it
                requests = emu.stats()["requests"]
                data["emulator_requests"] = {
                    name: {ep: n["total"] for ep, n in v["endpoints"].items()}
                    for name, v in requests.items()
                }
            if output_format == "csv":
                from tunegate._cli_run import write_csv

                write_csv(journal, output)
            if summary_json is not None:
                import orjson

                summary_json.parent.mkdir(parents=True, exist_ok=True)
                summary_json.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        except ConfigurationError as exc:
            raise _fail(err, exc, json_logs=log_format == "json") from None
        except OSError as exc:  # a path we cannot use: one line, not a traceback
            where = f"{exc.filename}: " if exc.filename else ""
            message = f"{where}{exc.strerror or exc}"
            raise _fail(err, message, json_logs=log_format == "json") from None
        except KeyboardInterrupt:
            say(
                err,
                log_format,
                f"interrupted: the rows done so far are in {output}; "
                "run the same command again to resume",
                logging.WARNING,
            )
            raise typer.Exit(130) from None
        status = data["status"]
        if not quiet:  # inside the run's correlation id, for --log-format json
            from tunegate._cli_run import summary_lines

            lines = summary_lines(data)
            if status["failed"] + status["partial"]:
                lines.append(
                    "Rows with errors keep their error in the output; run again to retry them."
                )
            if log_format == "json":
                logging.getLogger("tunegate.cli").info("%s", lines[0], extra={"summary": data})
            else:  # a long line is the terminal's to wrap: one line when copied
                for line in lines:
                    err.print(line, markup=False, highlight=False, soft_wrap=True)
    if not data["one_record_per_row"] or status["failed"] + status["partial"] + status["invalid"]:
        raise typer.Exit(1)


async def _enrich(
    settings: Any,
    cache_manager: Any,
    input_path: Path,
    output: Path,
    concurrency: int,
    retry_failed: bool,
    quiet: bool,
    every: float,
    err: Any,
    tuning: dict[str, Any],
) -> dict[str, Any]:
    import asyncio

    from tunegate._cli_run import ProgressView, Tally, summary_data
    from tunegate.clients import AsyncGateway
    from tunegate.enrich import Providers, count_rows, scan_output
    from tunegate.enrich import enrich as run

    async with AsyncGateway(settings, cache_manager=cache_manager) as gateway:
        providers = Providers.of(gateway)
        scan_output(output)  # refuse a foreign output before drawing anything
        total = count_rows(input_path)
        tally = Tally()
        gateway.breakers.add_listener(tally.on_breaker)
        view = ProgressView(err, total, gateway.get_stats, quiet=quiet, every=every)

        def on_progress(record: dict[str, Any] | None) -> None:
            view.record(record)
            tally.record(record)

        with view:
            ticker = asyncio.create_task(view.ticker())
            try:
                summary = await run(
                    providers,
                    input_path,
                    output,
                    concurrency=concurrency,
                    retry_failed=retry_failed,
                    on_progress=on_progress,
                    **tuning,
                )
            finally:
                ticker.cancel()
        breakers = tally.breakers(gateway.breakers)
        data = summary_data(summary, gateway.get_stats(), output, tally, breakers)
        for name, figures in data["providers"].items():  # each provider's limiter mode
            bucket = gateway.limiter.buckets.get(name)
            if bucket is not None:
                figures["limiter"] = bucket.mode_summary()
        return data


cache_app = typer.Typer(
    help="Inspect or clear the response cache (SQLite file, or Redis with --redis).\n\n"
    "Example: tunegate cache invalidate 'spotify:*'",
    no_args_is_help=True,
)
breaker_app = typer.Typer(
    help="Circuit breakers shared through Redis (in-process breakers end with their run).\n\n"
    "Example: tunegate breaker reset spotify --redis redis://localhost:6379/0",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")
app.add_typer(breaker_app, name="breaker")

CacheOpt = Annotated[
    str | None, typer.Option(help="SQLite cache file. Default: ~/.cache/tunegate/cache.db.")
]
RedisOpt = Annotated[str | None, typer.Option("--redis", help="Redis URL (or TUNEGATE_REDIS_URL).")]
BREAKERS = ("spotify", "spotify:accounts", "musicbrainz", "lastfm")


def _cache_manager(ctx: typer.Context, cache: str | None, redis_url: str | None) -> Any:
    from tunegate.cache import CacheManager
    from tunegate.cache.sqlite import default_sqlite_path

    cfg = _load(ctx, cache=cache, redis_url=redis_url)
    cache, redis_url = cfg.cache, cfg.secret("redis_url")

    if cache is not None:
        path = Path(cache)
        if not path.is_file():
            typer.echo(f"error: {path}: no such cache file", err=True)
            raise typer.Exit(2)
        return CacheManager.sqlite(path)
    if redis_url:
        from tunegate.cache.redisbackend import RedisBackend

        cm = CacheManager(redis_url)
        if isinstance(cm.backend, RedisBackend):
            _reachable(cm.backend.link)
        return cm
    return CacheManager.sqlite(default_sqlite_path())


@cache_app.command("stats")
def cache_stats(ctx: typer.Context, cache: CacheOpt = None, redis_url: RedisOpt = None) -> None:
    """Entries in the cache, per provider.

    Example: tunegate cache stats --cache .tunegate/sandbox/cache.db
    """
    from tunegate._redis import REDIS_FAILURES
    from tunegate.cache.redisbackend import RedisBackend
    from tunegate.cache.sqlite import SqliteBackend

    with _cache_manager(ctx, cache, redis_url) as cm:
        prefix = cm.key_scheme.prefix
        backend = cm.backend
        if isinstance(backend, SqliteBackend):
            typer.echo(f"backend sqlite, {len(backend)} entries")
            return
        if not isinstance(backend, RedisBackend):
            raise _fail(console_err(), f"cannot count the entries of {type(backend).__name__}")
        per: dict[str, int] = {}
        try:  # on the cache's own Redis connection: its timeouts, no second client
            for key in backend.link.sync.scan_iter(match=prefix + "*", count=1000):
                provider = key.decode()[len(prefix) :].split(":", 1)[0]
                per[provider] = per.get(provider, 0) + 1
        except REDIS_FAILURES as exc:
            raise _fail(console_err(), f"redis: {type(exc).__name__}") from None
        typer.echo(f"backend redis, {sum(per.values())} entries")
        for name, n in sorted(per.items()):
            typer.echo(f"  {name}: {n}")


@cache_app.command("invalidate")
def cache_invalidate(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Argument(help="A glob over unprefixed keys.")],
    cache: CacheOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Delete the entries matching PATTERN.

    Example: tunegate cache invalidate 'lastfm:*'
    """
    from tunegate.exceptions import InvalidInput

    with _cache_manager(ctx, cache, redis_url) as cm:
        try:
            n = cm.invalidate_pattern(pattern)
        except InvalidInput as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"{n} entries deleted")


@cache_app.command("clear")
def cache_clear(ctx: typer.Context, cache: CacheOpt = None, redis_url: RedisOpt = None) -> None:
    """Delete every tunegate entry (other keys in the same Redis are left alone).

    Example: tunegate cache clear --redis redis://localhost:6379/0
    """
    with _cache_manager(ctx, cache, redis_url) as cm:
        n = cm.invalidate_pattern("*")
    typer.echo(f"{n} entries deleted")


def _reachable(link: Any) -> None:
    """Exit 2 unless Redis answers: the admin commands must not report the local fallback
    state (every breaker closed, 0 entries deleted) as if it were the shared one."""
    from tunegate._redis import REDIS_FAILURES

    try:
        link.sync.ping()
    except REDIS_FAILURES as exc:
        link.close()
        raise _fail(console_err(), f"redis unreachable ({link!r}): {type(exc).__name__}") from None


@contextlib.contextmanager
def _registry(ctx: typer.Context, redis_url: str | None) -> Iterator[Any]:
    from tunegate._redis import RedisLink
    from tunegate.breaker import CircuitBreakerRegistry

    redis_url = _load(ctx, redis_url=redis_url).secret("redis_url")
    if not redis_url:
        raise _fail(
            console_err(),
            "breakers are shared only through Redis: give --redis or TUNEGATE_REDIS_URL",
        )
    try:
        link = RedisLink(redis_url)
    except ValueError as exc:  # a URL redis-py cannot read; its text holds no password
        raise _fail(console_err(), f"--redis: {exc}") from None
    _reachable(link)
    try:
        yield CircuitBreakerRegistry(redis=link)  # a link handed in: closed here, not there
    finally:
        link.close()


@breaker_app.command("status")
def breaker_status(ctx: typer.Context, redis_url: RedisOpt = None) -> None:
    """The shared state of each provider's breaker.

    Example: tunegate breaker status --redis redis://localhost:6379/0
    """
    with _registry(ctx, redis_url) as registry:
        for name in BREAKERS:
            typer.echo(f"{name:<17} {registry.register(name).state.value}")


@breaker_app.command("reset")
def breaker_reset(
    ctx: typer.Context,
    provider: Annotated[str, typer.Argument(help="One of " + ", ".join(BREAKERS) + ".")],
    redis_url: RedisOpt = None,
) -> None:
    """Close PROVIDER's shared breaker now.

    Example: tunegate breaker reset spotify
    """
    if provider not in BREAKERS:
        typer.echo(f"error: unknown breaker {provider!r}; one of {', '.join(BREAKERS)}", err=True)
        raise typer.Exit(2)
    with _registry(ctx, redis_url) as registry:
        breaker = registry.register(provider)
        breaker.reset()
        typer.echo(f"{provider} {breaker.state.value}")


config_app = typer.Typer(
    help="The configuration: flags > environment > TOML file > defaults.\n\n"
    "Example: tunegate --config ./tunegate.toml config show",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration and where each value came from, secrets masked.

    Example: tunegate config show
    """
    from tunegate.config import show_lines

    loaded = _loaded(ctx)
    for line in show_lines(loaded):
        typer.echo(line)


@app.command(
    help=_paragraphs("""Run the gateway as an HTTP service (/v1/..., pass-through, /metrics,
/status); the settings come from flags > environment > the TOML file, as for enrich. The same
file holds the service's own settings: admin_token (TUNEGATE_ADMIN_TOKEN), token_key
(TUNEGATE_TOKEN_KEY), drain (TUNEGATE_DRAIN) and an [api_keys] table of application = key
(TUNEGATE_API_KEYS=app=KEY,...); with --sandbox only these are used. Needs the 'serve' extra.

Example: tunegate serve --sandbox --port 8080""")
)
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML configuration file (as tunegate --config)."),
    ] = None,
    sandbox: Annotated[bool, typer.Option(help="Serve against the built-in emulator.")] = False,
) -> None:
    try:
        from tunegate.service import serve as run_service
    except ImportError as exc:  # starlette or uvicorn missing
        message = f"{exc.name} is not installed: pip install 'tunegate[serve]'"
        from tunegate._cli_run import console

        raise _fail(console(), message) from None
    if config is not None:
        ctx.find_root().obj = config
    # Loaded with --sandbox too: the admin token, caller keys and drain still apply.
    run_service(host=host, port=port, sandbox=sandbox, config=_load(ctx))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
