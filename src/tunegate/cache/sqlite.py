"""The persistent embedded backend: one SQLite file, shared safely by threads and processes.

- WAL journal: readers never wait for the writer, and a writer killed mid-write leaves the
  file consistent (the unfinished transaction is rolled back on next open).
  ``synchronous=NORMAL``: a power cut may lose the last commits, never the file.
- One connection per thread (``sqlite3`` connections must not be shared concurrently);
  ``busy_timeout`` makes a writer wait for another process's write lock instead of failing.
- Every statement is its own transaction (autocommit); batch deletes run in one
  ``BEGIN IMMEDIATE`` transaction each.
- Async: reads run inline (a WAL read of one row is tens of microseconds and never waits
  on a lock), but the event loop thread's connection is opened in a worker thread: switching
  to WAL and creating the schema may wait up to ``busy_timeout`` for another process's lock.
  Writes and deletes go through ``asyncio.to_thread`` because they may wait up to
  ``busy_timeout`` for another process's write lock, or for a checkpoint's fsync.
- Entries past ``stale_until`` are purged every ``purge_every`` writes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import compile_glob, split_key
from tunegate.cache._backend import BackendError, WarnEvery
from tunegate.cache.frozen import decode
from tunegate.exceptions import ConfigurationError

__all__ = ["SqliteBackend", "default_sqlite_path"]

log = logging.getLogger("tunegate.cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tunegate_cache (
    key TEXT PRIMARY KEY,
    fresh_until REAL NOT NULL,
    stale_until REAL NOT NULL,
    negative INTEGER NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tunegate_cache_stale_until ON tunegate_cache (stale_until);
"""
_GET = "SELECT value, fresh_until, stale_until, negative FROM tunegate_cache WHERE key = ?"
_PUT = (
    "INSERT OR REPLACE INTO tunegate_cache (key, fresh_until, stale_until, negative, value)"
    " VALUES (?, ?, ?, ?, ?)"
)
_DELETE = "DELETE FROM tunegate_cache WHERE key = ?"
_PURGE = "DELETE FROM tunegate_cache WHERE stale_until <= ?"
_RANGE = "SELECT key FROM tunegate_cache WHERE key >= ? AND key < ?"
_BATCH = 500


def default_sqlite_path() -> Path:
    """``$XDG_CACHE_HOME/tunegate/cache.db`` (``~/.cache/tunegate/cache.db`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tunegate" / "cache.db"


def _key_range(pattern: str) -> tuple[str, str]:
    """``(low, high)``: every key the glob can match lies in ``[low, high)``. ``low`` is the
    pattern's leading run of plain printable ASCII (at least the namespace prefix), so
    ``high``, its last character plus one, is plain ASCII too. Keys compare as UTF-8 bytes,
    which order like code points."""
    end = 0
    for ch in pattern:
        if ch in "*?[\\" or not " " <= ch < "\x7e":
            break
        end += 1
    low = pattern[:end]
    return low, low[:-1] + chr(ord(low[-1]) + 1)


class SqliteBackend:
    """Entries in one SQLite file (created, with its directory, on first use)."""

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = 5.0,
        purge_every: int = 1000,
    ) -> None:
        if busy_timeout < 0 or purge_every < 1:
            raise ConfigurationError("busy_timeout must be >= 0 and purge_every >= 1")
        self.path = Path(path) if path is not None else default_sqlite_path()
        self.busy_timeout = float(busy_timeout)
        self.purge_every = int(purge_every)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writes = 0
        self._setup_lock = threading.Lock()
        self._closed = False
        self._warn = WarnEvery(log)

    # -- connections -------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """WAL mode and the schema. Switching a new file to WAL takes an exclusive lock
        without waiting on the busy handler, so concurrent first connections (threads here,
        or another process) may see "locked": wait for them, within ``busy_timeout``."""
        deadline = time.monotonic() + self.busy_timeout
        with self._setup_lock:
            while True:
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.execute("PRAGMA synchronous = NORMAL")
                    conn.executescript(_SCHEMA)
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                time.sleep(0.01)

    def _connect(self) -> sqlite3.Connection:
        self._check_open()  # no file or directory made for a closed cache
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False only so close() may close every thread's connection;
        # each connection is still used by its own thread alone.
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._set_up(conn)
        except BaseException:
            conn.close()
            raise
        try:
            with self._lock:
                self._check_open()  # close() may have run while this one was opening
                self._conns.append(conn)
        except BackendError:
            conn.close()
            raise
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("sqlite cache is closed")

    async def _aconn(self) -> sqlite3.Connection:
        """This (event loop) thread's connection, opened in a worker thread if new."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = await asyncio.to_thread(self._connect)
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc, "open") from exc
        current: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if current is not None:  # a concurrent first use on this loop opened one already
            with self._lock:
                if conn in self._conns:  # else close() has taken (and closed) it already
                    self._conns.remove(conn)
            conn.close()
            return current
        self._local.conn = conn
        return conn

    def _failed(self, exc: BaseException, what: str) -> BackendError:
        self._warn.warning(
            "sqlite cache %s failed; treated as a miss (%s: %s)", what, type(exc).__name__, exc
        )
        return BackendError(what)

    # -- operations --------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        try:
            row = self._conn().execute(_GET, (key,)).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc, "read") from exc
        if row is None:
            return None
        payload, fresh_until, stale_until, negative = row
        try:
            value = decode(payload)
        except ValueError as exc:  # orjson.JSONDecodeError: a damaged row
            raise self._failed(exc, "decode") from exc
        split = split_key(key)
        if split is None:
            raise self._failed(ValueError("not a cache key"), "decode")
        provider, kind = split
        return CacheEntry(value, bool(negative), False, provider, kind, fresh_until, stale_until)

    async def aget(self, key: str) -> CacheEntry | None:
        await self._aconn()
        return self.get(key)  # the read itself inline: see the module docstring

    def put(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        try:
            conn = self._conn()
            conn.execute(
                _PUT, (key, entry.fresh_until, entry.stale_until, int(entry.negative), payload)
            )
            with self._lock:
                self._writes += 1
                purge = self._writes % self.purge_every == 0
            if purge:
                conn.execute(_PURGE, (now,))
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc, "write") from exc

    async def aput(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        await asyncio.to_thread(self.put, key, entry, payload, now)

    def delete(self, key: str) -> int:
        try:
            return self._conn().execute(_DELETE, (key,)).rowcount
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc, "delete") from exc

    async def adelete(self, key: str) -> int:
        return await asyncio.to_thread(self.delete, key)

    def delete_matching(self, pattern: str) -> int:
        match = compile_glob(pattern).match
        low, high = _key_range(pattern)
        try:
            conn = self._conn()
            keys = [k for (k,) in conn.execute(_RANGE, (low, high)) if match(k.encode())]
            deleted = 0
            for start in range(0, len(keys), _BATCH):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for key in keys[start : start + _BATCH]:
                        deleted += conn.execute(_DELETE, (key,)).rowcount
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            return deleted
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc, "delete") from exc

    async def adelete_matching(self, pattern: str) -> int:
        return await asyncio.to_thread(self.delete_matching, pattern)

    def purge_expired(self, now: float) -> int:
        """Delete entries past their stale grace; returns how many."""
        try:
            return self._conn().execute(_PURGE, (now,)).rowcount
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc, "purge") from exc

    def __len__(self) -> int:
        try:
            return int(self._conn().execute("SELECT count(*) FROM tunegate_cache").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc, "count") from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    async def aclose(self) -> None:
        self.close()
