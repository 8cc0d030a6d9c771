"""``tunegate serve`` as a real process on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from tests._redis_server import free_port


class Served(subprocess.Popen[bytes]):
    log_path: str

    def log(self) -> str:
        """What the process printed so far (stdout and stderr)."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


@contextlib.contextmanager
def serve_process(
    *args: str, env: Mapping[str, str] | None = None, startup: float = 60.0
) -> Iterator[tuple[str, Served]]:
    """Start ``tunegate serve --port P *args``, wait for /healthz, yield (base URL, process);
    SIGTERM at the end (uvicorn finishes in-flight requests, then exits). Its output goes
    to a file (a pipe nobody reads could fill and stall the server): ``proc.log()``."""
    import tempfile

    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "LASTFM_"))}
    base.pop("TUNEGATE_REDIS_URL", None)
    fd, log_path = tempfile.mkstemp(prefix="tunegate-serve-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        proc = Served(
            [sys.executable, "-m", "tunegate", "serve", "--port", str(port), *args],
            env={**base, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc.log_path = log_path
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"service did not start: {proc.log()}")
            time.sleep(0.2)  # a poll of another process's readiness, bounded above
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.unlink(proc.log_path)


@contextlib.contextmanager
def running_app(
    app: Any, startup: float = 30.0, tls: tuple[str, str] | None = None
) -> Iterator[str]:
    """``app`` on a real uvicorn server in a thread, on a free loopback port; its base URL.
    (The server's event loop is the thread's own, so the app's gateway lives there.)
    ``tls``: (certificate file, key file) to serve HTTPS."""
    import threading

    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        ssl_certfile=None if tls is None else tls[0],
        ssl_keyfile=None if tls is None else tls[1],
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tunegate-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)  # a bounded poll of the server thread's readiness
    try:
        yield f"{'http' if tls is None else 'https'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
