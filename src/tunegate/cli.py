"""The ``tunegate`` command."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
