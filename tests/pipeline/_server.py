"""A small scripted HTTP server on 127.0.0.1 for the pipeline tests (aiohttp, own thread).

Each path answers from a script: a list of :class:`Reply`, consumed in order, the last one
repeating. Every request is logged (path, query, headers, arrival time on the server's
monotonic clock, peer port) so tests can count upstream calls and check what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    mode: str = "normal"  # normal, gzip, badgzip, truncated, hang, drip, stream
    events: list[str] | None = None  # appended "http" on arrival (stage-order test)


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float
    peer_port: int


class ScriptServer:
    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.default = Reply(json={"ok": True})
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)
        self.port = 0

    # -- control --------------------------------------------------------------------------

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self.scripts[path] = list(replies)

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.seen if path is None or s.path == path)

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- serving --------------------------------------------------------------------------

    def _next(self, path: str) -> Reply:
        with self._lock:
            script = self.scripts.get(path)
            if not script:
                return self.default
            return script.pop(0) if len(script) > 1 else script[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self._lock:
            self.seen.append(
                Seen(
                    request.path,
                    dict(request.query),
                    dict(request.headers),
                    time.monotonic(),
                    peer[1] if peer else 0,
                )
            )
        reply = self._next(request.path)
        if reply.events is not None:
            reply.events.append("http")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        body = reply.body if reply.body is not None else orjson.dumps(reply.json)
        if reply.mode == "hang":
            await asyncio.sleep(3600)
        if reply.mode in ("truncated", "drip", "stream"):
            resp = web.StreamResponse(status=reply.status, headers=reply.headers)
            resp.content_type = reply.content_type
            if reply.mode == "truncated":
                resp.content_length = len(body) + 1000
            await resp.prepare(request)
            if reply.mode == "truncated":
                await resp.write(body)
                assert request.transport is not None
                request.transport.close()
                return resp
            step = 1 if reply.mode == "drip" else 64 * 1024
            for i in range(0, len(body), step):
                await resp.write(body[i : i + step])
                if reply.mode == "drip":
                    await asyncio.sleep(0.05)
            await resp.write_eof()
            return resp
        headers = dict(reply.headers)
        if reply.mode == "gzip":
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        if reply.mode == "badgzip":  # says gzip, is not: a body that cannot be decoded
            headers["Content-Encoding"] = "gzip"
        return web.Response(
            status=reply.status, body=body, headers=headers, content_type=reply.content_type
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def serve() -> Iterator[ScriptServer]:
    server = ScriptServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class RawServer:
    """Answers every connection on 127.0.0.1 with the same raw bytes (a malformed status
    line, say), then closes it: what aiohttp itself refuses to parse."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(2.0)
                conn.recv(65536)
                conn.sendall(self.answer)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
