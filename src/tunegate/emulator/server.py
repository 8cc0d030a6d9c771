"""The emulator's HTTP server: one aiohttp app serving the three providers on one port, the
request pipeline (gatekeeping, faults, stats), the admin endpoints, TLS, and
:class:`Emulator`, which runs it all on a background thread with its own event loop.

Pipeline of every provider request::

    client identity + credentials + quota (the provider's own rules)   -> refusal, or
    a hold (MusicBrainz's throttle by delay), then the refusal or         -> the rest
    fault plan: latency, then an error status / hang / outage          -> failure, or
    the provider's handler                                             -> response
    body faults: reset, close, truncate, malformed, drip, wrong type
    stats: the status sent, or "dropped" when the connection went away instead
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiohttp import web

from tunegate._clock import Clock, SystemClock
from tunegate.emulator._http import HOLD, Handler, Provider, State, json_response
from tunegate.emulator.catalog import Catalog, get_catalog
from tunegate.emulator.config import EmulatorConfig, spotify_mode_settings
from tunegate.emulator.env import client_env, render_exports
from tunegate.emulator.faults import FaultInjector, FaultPlan, FaultSpec, parse_faults
from tunegate.emulator.lastfm import LastfmProvider
from tunegate.emulator.musicbrainz import MusicBrainzProvider
from tunegate.emulator.spotify import SpotifyProvider
from tunegate.emulator.stats import DROPPED
from tunegate.emulator.text import ascii_int

__all__ = ["Emulator", "EmulatorURLs", "build_app"]

log = logging.getLogger("tunegate.emulator")
T = TypeVar("T")
_DROPPED = web.RequestKey("emulator_dropped", bool)  # the connection was dropped, not answered

_WRONG_TYPE_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Network notice</title></head>"
    b"<body><h1>Please sign in to continue</h1><p>This network requires you to accept "
    b"its terms before browsing.</p></body></html>\n"
)


def build_app(state: State) -> web.Application:
    """The aiohttp application serving ``state``."""
    app = web.Application(client_max_size=1 << 20)
    providers: list[Provider] = [
        SpotifyProvider(state),
        MusicBrainzProvider(state),
        LastfmProvider(state),
    ]
    for provider in providers:
        for route in provider.routes():
            app.router.add_route(
                route.method, route.path, _pipeline(state, provider, route.endpoint, route.handler)
            )
    _Admin(state).register(app)
    return app


def _pipeline(state: State, provider: Provider, endpoint_name: str, handler: Handler) -> Handler:
    name = provider.name

    async def run(request: web.Request) -> web.StreamResponse:
        endpoint = endpoint_name
        response: web.StreamResponse
        try:
            endpoint = await provider.endpoint_of(request, endpoint_name)
            now = state.clock.monotonic()
            client, refusal = await provider.admit(request, endpoint, now)
            window = getattr(state.config, f"{name}_rate").window
            state.stats.arrival(name, client, window, now)
            hold = request.get(HOLD, 0.0)
            if hold > 0 and not await _wait_connected(state, request, hold):
                _drop(request, reset=False)  # the client gave up on the held answer
                response = web.Response(status=504)  # never sent: stats say "dropped"
            elif refusal is not None:
                response = refusal
            else:
                plan = state.faults.decide(name, endpoint, now)
                response = await _serve(state, provider, endpoint, request, handler, plan)
        except ConnectionError:  # the client went away mid-answer (a drip it gave up on)
            state.stats.response(name, endpoint, DROPPED)
            raise
        except Exception:  # a bug of ours: count it (tests assert none) and answer 500
            log.exception("emulator: internal error on %s %s", request.method, request.path)
            state.stats.internal_errors += 1
            response = provider.error(request, 500)
        state.stats.response(name, endpoint, DROPPED if request.get(_DROPPED) else response.status)
        return response

    return run


async def _serve(
    state: State,
    provider: Provider,
    endpoint: str,
    request: web.Request,
    handler: Handler,
    plan: FaultPlan,
) -> web.StreamResponse:
    name = provider.name
    if plan.latency > 0:
        await state.clock.asleep(plan.latency)
    if plan.status is not None:
        state.stats.fault(name, endpoint, "outage" if plan.outage else f"error_{plan.status}")
        return provider.error(request, plan.status, retry_after=plan.retry_after)
    if plan.kind == "hang":
        state.stats.fault(name, endpoint, "hang")
        return await _hang(state, request, plan.hang_seconds)
    response = await handler(request)
    if plan.kind is None or not isinstance(response, web.Response):
        return response
    state.stats.fault(name, endpoint, plan.kind)
    return await _body_fault(request, response, plan, state.clock)


async def _wait_connected(state: State, request: web.Request, seconds: float) -> bool:
    """Wait ``seconds`` unless the client gives up or the server stops; True if it waited
    them all with the client still there."""
    clock = state.clock
    deadline = clock.monotonic() + seconds
    while not state.closing:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        left = deadline - clock.monotonic()
        if left <= 0:
            return True
        await clock.asleep(min(left, 0.05))  # slices: a client that leaves is seen soon
    return False


async def _hang(state: State, request: web.Request, seconds: float) -> web.StreamResponse:
    """Say nothing until the client gives up, the server stops, or ``seconds`` pass."""
    await _wait_connected(state, request, seconds)
    _drop(request, reset=False)
    return web.Response(status=504)  # never reaches the client (the stats say "dropped")


def _drop(request: web.Request, *, reset: bool) -> None:
    request[_DROPPED] = True
    transport = request.transport
    if transport is None:
        return
    if reset:  # SO_LINGER 0 turns close() into a TCP RST
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


async def _body_fault(
    request: web.Request, response: web.Response, plan: FaultPlan, clock: Clock
) -> web.StreamResponse:
    body = response.body if isinstance(response.body, bytes) else b""
    kind = plan.kind
    if kind == "truncate":
        return _replace_body(response, body[: len(body) // 2])
    if kind == "malformed":
        mid = len(body) // 2
        return _replace_body(response, body[:mid] + b'\x00"}{<<' + body[mid:])
    if kind == "wrong_content_type":
        return web.Response(body=_WRONG_TYPE_PAGE, status=200, content_type="text/html")
    stream = web.StreamResponse(status=response.status, reason=response.reason)
    for key, value in response.headers.items():
        if key.lower() not in ("content-length", "transfer-encoding"):
            stream.headers.add(key, value)
    stream.content_length = len(body)
    await stream.prepare(request)
    if kind == "drip":
        pieces = max(1, min(len(body), 20))
        size = -(-len(body) // pieces)
        for n in range(pieces):
            await stream.write(body[n * size : (n + 1) * size])
            await clock.asleep(plan.drip_seconds / pieces)
        await stream.write_eof()
        return stream
    # reset / close: part of the body, then the connection goes away.
    await stream.write(body[: max(1, len(body) // 2)])
    _drop(request, reset=kind == "reset")
    return stream


def _replace_body(response: web.Response, body: bytes) -> web.Response:
    new = web.Response(body=body, status=response.status, reason=response.reason)
    for key, value in response.headers.items():
        if key.lower() not in ("content-length", "transfer-encoding"):
            new.headers.add(key, value)
    return new


class _Admin:
    """``/_emulator/*``: faults, stats, configuration, reset. Never faulted or rate limited."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.initial_config = state.config.copy()

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/_emulator/health", self.health)
        r.add_get("/_emulator/stats", self.stats)
        r.add_delete("/_emulator/stats", self.reset_stats)
        r.add_post("/_emulator/stats/reset", self.reset_stats)
        r.add_get("/_emulator/faults", self.get_faults)
        r.add_put("/_emulator/faults", self.put_faults)
        r.add_post("/_emulator/faults", self.post_faults)
        r.add_delete("/_emulator/faults", self.delete_faults)
        r.add_get("/_emulator/config", self.get_config)
        r.add_patch("/_emulator/config", self.patch_config)
        r.add_post("/_emulator/reset", self.reset)
        r.add_post("/_emulator/tokens/expire", self.expire_tokens)
        r.add_get("/_emulator/catalog", self.catalog_info)
        r.add_get("/_emulator/catalog/tracks/{index}", self.catalog_track)

    async def health(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(self.state.stats.snapshot())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.state.stats.reset()
        return json_response({"status": "ok"})

    async def get_faults(self, request: web.Request) -> web.Response:
        return json_response({"rules": [r.to_json() for r in self.state.faults.rules()]})

    async def _read_rules(self, request: web.Request) -> list[FaultSpec]:
        raw = await request.text()
        return parse_faults(raw)

    async def put_faults(self, request: web.Request) -> web.Response:
        return await self._change_faults(request, replace=True)

    async def post_faults(self, request: web.Request) -> web.Response:
        return await self._change_faults(request, replace=False)

    async def _change_faults(self, request: web.Request, *, replace: bool) -> web.Response:
        try:
            rules = await self._read_rules(request)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        now = self.state.clock.monotonic()
        if replace:
            self.state.faults.set(rules, now)
        else:
            self.state.faults.add(rules, now)
        return await self.get_faults(request)

    async def delete_faults(self, request: web.Request) -> web.Response:
        self.state.faults.clear()
        return json_response({"rules": []})

    async def get_config(self, request: web.Request) -> web.Response:
        return json_response(self.state.config.public())

    async def patch_config(self, request: web.Request) -> web.Response:
        try:
            changes = orjson.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("send a JSON object of settings")
            self.state.config.update(changes)
        except (ValueError, TypeError, KeyError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(self.state.config.public())

    async def reset(self, request: web.Request) -> web.Response:
        reset_state(self.state, self.initial_config)
        return json_response({"status": "ok"})

    async def expire_tokens(self, request: web.Request) -> web.Response:
        expire_tokens(self.state)
        return json_response({"status": "ok"})

    async def catalog_info(self, request: web.Request) -> web.Response:
        cat = self.state.catalog
        return json_response({"size": cat.size, "seed": cat.seed, "real_tracks": cat.n_real})

    async def catalog_track(self, request: web.Request) -> web.Response:
        cat = self.state.catalog
        index = ascii_int(request.match_info["index"])
        if index is None or not 0 <= index < cat.size:
            return json_response({"error": "no such track index"}, 404)
        return json_response(describe_track(cat, index))


def describe_track(cat: Catalog, i: int) -> dict[str, Any]:
    """A track as the three providers know it: the ids a test needs to look it up."""
    t = cat.track(i)
    return {
        "index": i,
        "title": t.title,
        "display_title": t.display_title,
        "artists": [cat.artist(a).name for a in t.artists],
        "artist_spotify_ids": [cat.artist(a).spotify_id for a in t.artists],
        "artist_mbids": [cat.artist(a).mbid for a in t.artists],
        "album": t.album.name,
        "isrc": t.isrc,
        "duration_ms": t.duration_ms,
        "spotify_id": t.spotify_id,
        "mbid": t.mbid,
        "on_lastfm": t.on_lastfm,
        "tags": [name for name, _ in t.tags],
    }


def reset_state(state: State, config: EmulatorConfig) -> None:
    state.stats.reset()
    state.faults.clear()
    state.tokens.clear()
    state.reset_limits()
    state.config.update({f: getattr(config, f) for f in config.__dataclass_fields__})


def expire_tokens(state: State) -> None:
    state.tokens.expire_all(state.clock.monotonic())


@dataclass(frozen=True)
class EmulatorURLs:
    """Where each imitated service answers."""

    root: str  # scheme://host:port
    host: str  # host:port, for musicbrainzngs.set_hostname and pylast's ws_server
    spotify: str  # Web API base, ends with /v1
    spotify_token: str  # client-credentials token endpoint, ends with /api/token
    musicbrainz: str  # ends with /ws/2
    lastfm: str  # ends with /2.0/
    admin: str  # ends with /_emulator

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


class Emulator:
    """The provider emulator on a background thread: ``with Emulator() as emu: ...``.

    Usable from sync and async code alike (the server has its own thread and event loop).
    ``settings`` are :class:`EmulatorConfig` fields (``token_lifetime=2``,
    ``spotify_batch_tracks=True``, ``spotify_rate=RateLimit(5, 1.0)``, ...).
    ``spotify_mode="development"`` (the real default for a new app: several-ids endpoints
    403, search ``limit`` <= 10) or ``"extended"`` (Extended Quota: batches allowed,
    ``limit`` <= 50); explicit settings win. ``musicbrainz_rate=RateLimit(1, 1.0)`` is the
    real quota (default); over it ``musicbrainz_throttle="reject"`` (default: 503 at once),
    ``"delay"`` (the answer is held ``musicbrainz_throttle_delay`` seconds, then served) or
    ``"delay_then_reject"``; ``musicbrainz_block=True`` blocks a client sending more than
    ``musicbrainz_block_rate`` (10 in 10 s) for ``musicbrainz_block_seconds``.
    ``clock`` (a :class:`tunegate._clock.Clock`; the real one by default) is all the time the
    emulator reads and waits on: rate windows, blocks, token expiry, throttle holds, fault
    latency and drips. A test passes ``tunegate.testing.FakeClock()`` and advances it.
    """

    def __init__(
        self,
        *,
        catalog_size: int = 10_000,
        seed: int = 0,
        tls: bool = False,
        faults: str | list[FaultSpec] | Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EmulatorConfig | None = None,
        spotify_mode: str | None = None,
        clock: Clock | None = None,
        **settings: Any,
    ) -> None:
        cfg = (config or EmulatorConfig()).copy()
        if spotify_mode is not None:
            cfg.update(spotify_mode_settings(spotify_mode))
        cfg.update(settings)
        self.catalog = get_catalog(catalog_size, seed)
        self._state = State(
            catalog=self.catalog,
            config=cfg,
            faults=FaultInjector(seed),
            clock=clock or SystemClock(),
        )
        self._initial_config = cfg.copy()
        self._initial_faults: list[FaultSpec] | None = (
            parse_faults(faults) if faults is not None else []
        )  # None once installed: a restart keeps the rules of the moment
        self.host = host
        self.port = port
        self.tls = tls
        self.ca_path: str | None = None
        self._tmpdir: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._ca_pem = b""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._urls: EmulatorURLs | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        """Serve until :meth:`stop`. After a stop, start again serves on the same port with
        the same state (settings, faults, stats, tokens) and, under TLS, the same CA."""
        if self._thread is not None:
            raise RuntimeError("this emulator is already started")
        self._ready.clear()
        self._state.closing = False
        if self.tls:
            self._make_certificates()
        self._thread = threading.Thread(target=self._run, name="tunegate-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=600):
            raise RuntimeError("the emulator did not start within 10 minutes")
        if self._error is not None:
            self._thread.join(timeout=5)
            self._thread = None
            raise RuntimeError("the emulator could not start") from self._error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(self._state.__setattr__, "closing", True)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
        self._thread = None
        self._loop = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Emulator:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def _run(self) -> None:
        self._error = None
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        state = self._state
        # The search index, before serving: built on a first search, it would hold the event
        # loop for ~70 ms per 10,000 tracks while other clients wait.
        self.catalog.index()
        if self._initial_faults is not None:
            state.faults.set(self._initial_faults, state.clock.monotonic())
            self._initial_faults = None
        self._runner = web.AppRunner(
            build_app(state), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    def _make_certificates(self) -> None:
        if self._ssl is None:  # once per Emulator: a restart keeps the CA clients trust
            import trustme  # imported here: only --tls needs it

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(self._ssl)
            self._ca_pem = ca.cert_pem.bytes()
        self._tmpdir = tempfile.mkdtemp(prefix="tunegate-emulator-")
        path = Path(self._tmpdir) / "emulator-ca.pem"
        path.write_bytes(self._ca_pem)
        self.ca_path = str(path)

    # ------------------------------------------------------------------ addresses
    @property
    def urls(self) -> EmulatorURLs:
        if self._urls is None or f":{self.port}" not in self._urls.root:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
            if ":" in host:
                host = f"[{host}]"
            hostport = f"{host}:{self.port}"
            root = f"{'https' if self.tls else 'http'}://{hostport}"
            self._urls = EmulatorURLs(
                root=root,
                host=hostport,
                spotify=f"{root}/v1",
                spotify_token=f"{root}/api/token",
                musicbrainz=f"{root}/ws/2",
                lastfm=f"{root}/2.0/",
                admin=f"{root}/_emulator",
            )
        return self._urls

    def env(self) -> dict[str, str]:
        """Environment variables pointing ``Gateway.from_env()`` / ``tunegate enrich`` here,
        with credentials this emulator accepts (start it first: the URLs carry the port)."""
        if self.port == 0:
            raise RuntimeError("start the emulator before asking for its environment")
        return client_env(self.urls, self._state.config)

    def env_exports(self) -> str:
        """:meth:`env` as shell ``export`` lines."""
        return render_exports(self.env())

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting this emulator's CA (TLS only)."""
        if self.ca_path is None:
            raise RuntimeError("start the emulator with tls=True to get a CA")
        return ssl.create_default_context(cafile=self.ca_path)

    # ------------------------------------------------------------------ control
    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (where the state lives) and return its result."""
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            return fn()  # not running: nothing else touches the state

        future: Future[T] = Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return future.result(timeout=30)

    def configure(self, **settings: Any) -> None:
        """Change settings while running (see :class:`EmulatorConfig`)."""
        self._call(lambda: self._state.config.update(settings))

    @property
    def config(self) -> EmulatorConfig:
        """A copy of the current settings."""
        return self._call(self._state.config.copy)

    def set_faults(self, spec: str | list[FaultSpec] | FaultSpec | Mapping[str, Any]) -> None:
        """Replace the fault rules (JSON-like data, FaultSpec objects or the text form)."""
        rules = parse_faults(spec)
        self._call(lambda: self._state.faults.set(rules, self._state.clock.monotonic()))

    def add_faults(self, spec: str | list[FaultSpec] | FaultSpec | Mapping[str, Any]) -> None:
        rules = parse_faults(spec)
        self._call(lambda: self._state.faults.add(rules, self._state.clock.monotonic()))

    def clear_faults(self) -> None:
        self._call(self._state.faults.clear)

    def faults(self) -> list[FaultSpec]:
        return self._call(self._state.faults.rules)

    def stats(self) -> dict[str, Any]:
        """What ``/_emulator/stats`` returns."""
        return self._call(self._state.stats.snapshot)

    def reset_stats(self) -> None:
        self._call(self._state.stats.reset)

    def expire_tokens(self) -> None:
        """Make every Spotify token issued so far expired."""
        self._call(lambda: expire_tokens(self._state))

    def reset(self) -> None:
        """Back to the state at start: no faults, empty stats, no tokens, initial settings."""
        self._call(lambda: reset_state(self._state, self._initial_config))

    def issue_spotify_token(self, client_id: str | None = None) -> str:
        """A valid bearer token for ``client_id`` (default: the first configured client),
        without an HTTP round trip."""

        def issue() -> str:
            state = self._state
            app = client_id or next(iter(state.config.spotify_clients))
            return state.tokens.issue(app, state.clock.monotonic(), state.config.token_lifetime)

        return self._call(issue)

    def describe_track(self, index: int) -> dict[str, Any]:
        """Ids and names of catalogue track ``index`` at the three providers."""
        return describe_track(self.catalog, index)
