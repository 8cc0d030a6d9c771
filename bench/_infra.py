"""What ``bench/run`` starts for itself: a private redis-server (the tests' helper), the
emulator in its own process, and a loopback TCP proxy that counts round trips. Loopback
only."""

from __future__ import annotations

import os
import select
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

# tests/_redis_server.py is the one private-redis helper: bench/ imports it from the clone.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(1, _ROOT)

from tests._redis_server import RedisServer, free_port  # noqa: E402

__all__ = ["CountingProxy", "EmulatorProcess", "RedisServer", "free_port", "private_redis"]


def _wait_for(probe: Any, what: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            probe()
            return
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start in {seconds:g} s") from None
            time.sleep(0.05)


def private_redis() -> RedisServer:
    """A started private ``redis-server`` (``tests/_redis_server.py``, the one helper that
    the tests and ``bench_serve.py``'s outage phase use too); :meth:`RedisServer.close`
    ends it."""
    server = RedisServer()
    server.start()
    return server


class EmulatorProcess:
    """``tunegate emulator`` in a child process, so its server does not share our GIL.

    ``rate_limits=False`` lifts the quotas (every figure but 8); ``tls=True`` serves HTTPS
    (pylast speaks nothing else) and sets ``ca`` to the path of its CA certificate."""

    def __init__(
        self, *, rate_limits: bool = False, tls: bool = False, catalog_size: int = 10_000
    ) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "tunegate", "emulator", "--port", str(self.port)]
        args += ["--catalog-size", str(catalog_size)]
        if not rate_limits:
            args.append("--no-rate-limits")
        if tls:
            args.append("--tls")
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            args, stdout=self.out, stderr=subprocess.DEVNULL, env=child_env()
        )
        self.env, self.ca = self._read_banner()
        self.root = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        verify: Any = ssl.create_default_context(cafile=self.ca) if self.ca else True
        self.admin = httpx.Client(base_url=f"{self.root}/_emulator", timeout=10, verify=verify)
        _wait_for(lambda: self.admin.get("/health").raise_for_status(), "emulator", self.proc)

    def _read_banner(self) -> tuple[dict[str, str], str | None]:
        deadline = time.monotonic() + 120
        while True:
            self.out.seek(0)
            lines = self.out.read().decode().splitlines()
            if any(line.startswith("Press Ctrl+C") for line in lines):
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("the emulator printed no banner in 120 s")
            time.sleep(0.05)
        env, ca = {}, None
        for line in lines:
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                env[name] = value.strip("'")
            elif line.startswith("ca "):
                ca = line[3:].strip()
        return env, ca

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin.get("/stats").json()
        return result

    def reset_stats(self) -> None:
        self.admin.delete("/stats").raise_for_status()

    def reset(self) -> None:
        """Back to the state at start: stats, tokens and quota windows cleared."""
        self.admin.post("/reset").raise_for_status()

    def configure(self, **settings: Any) -> None:
        self.admin.patch("/config", json=settings).raise_for_status()

    def close(self) -> None:
        self.admin.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.out.close()


class CountingProxy:
    """A loopback TCP proxy that counts round trips: a burst of bytes from the client that
    follows a reply (or opens the connection) starts one. A pipelined batch is one round
    trip, as it costs one. ``marks`` records each round trip's start, for ordering."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.round_trips = 0
        self.marks: list[float] = []
        self.heads: list[bytes] = []  # the first bytes of each round trip, for diagnosis
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True, name="bench-proxy")
        t.start()
        self._threads.append(t)

    def reset(self) -> None:
        with self.lock:
            self.round_trips = 0
            self.marks = []
            self.heads = []

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks += [client, upstream]
            t = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        replied = True  # the first client burst starts a round trip
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        if replied:
                            with self.lock:
                                self.round_trips += 1
                                self.marks.append(time.monotonic())
                                self.heads.append(data[:120])
                            replied = False
                        upstream.sendall(data)
                    else:
                        replied = True
                        client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for t in self._threads:
            t.join(timeout=2)


def here() -> Path:
    return Path(__file__).resolve().parent


def child_env() -> dict[str, str]:
    """The environment for our child processes: tunegate's sources first, as ours."""
    import tunegate

    env = dict(os.environ)
    src = str(Path(tunegate.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src, str(here()), env.get("PYTHONPATH", "")])
    return env
