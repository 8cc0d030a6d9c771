"""A private redis-server on a free loopback port, which may be stopped and restarted: the
one helper for the tests (``tests/conftest.py``), ``bench/run`` (``bench/_infra.py``) and
``bench/bench_serve.py`` (its Redis-outage phase). Never the shared 6379; nothing on disk."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process; ``stop()`` and ``start()`` keep the same port.

    ``with RedisServer() as server:`` starts it (unless it runs already) and ends with
    :meth:`close`, which also removes its directory. ``extra_args`` are more redis-server
    arguments, e.g. ``("--maxmemory", "1mb")``, given at every start; they come after the
    helper's own, so for a setting given twice they win."""

    def __init__(self, *, extra_args: Sequence[str] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.extra_args = tuple(extra_args)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tunegate-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""  # the server's redis_version, once started

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    def start(self) -> None:
        """Start the server (again) on its port; returns once it answers PING (10 s)."""
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        probe = self.client(socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    probe.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if self.proc.poll() is not None:
                        raise RuntimeError(
                            f"private redis-server exited with {self.proc.returncode}"
                        ) from None
                    if time.monotonic() > deadline:
                        raise RuntimeError("private redis-server did not start") from None
                    time.sleep(0.02)
            self.version = str(probe.info("server")["redis_version"])
        finally:
            probe.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def close(self) -> None:
        """Stop it for good and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def flush(self) -> None:
        c = self.client()
        c.flushall()
        c.close()

    def __enter__(self) -> RedisServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
