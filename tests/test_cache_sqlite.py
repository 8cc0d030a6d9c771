"""The SQLite backend: persistence, WAL, several threads and processes, a killed writer,
and failing open on a bad file."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tunegate.cache import CacheManager, FrozenDict, SqliteBackend
from tunegate.testing import FakeClock

TRACK: dict[str, Any] = {
    "id": "4uLU6hMCjMI75M1A2tKUQC",
    "name": "Strobe",
    "artists": [{"name": "deadmau5"}],
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "cache.db"


def _run_child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_roundtrip_and_persistence(db: Path) -> None:
    """Values survive closing and reopening the file, come back frozen, in WAL mode."""
    with CacheManager.sqlite(db) as cache:
        key = cache.key("spotify:track", TRACK["id"])
        cache.store(key, TRACK)
        assert cache.get(key) == TRACK
    with CacheManager.sqlite(db) as cache:
        entry = cache.lookup(key)
        assert entry is not None
        assert entry.value == TRACK
        assert type(entry.value) is FrozenDict
        assert (entry.provider, entry.kind) == ("spotify", "spotify:track")
        assert cache.get_stats()["errors"] == 0
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_ttl_stale_and_negative(db: Path) -> None:
    """The same lifetimes as in memory: fresh, stale within grace, gone; negatives."""
    clock = FakeClock()
    with CacheManager.sqlite(db, clock=clock, jitter=0.0, stale_grace=100.0) as cache:
        key = cache.key("spotify:search", "a", "b")
        cache.store(key, [1, 2], ttl=10.0)
        neg = cache.key("musicbrainz:isrc", "XX")
        cache.store(neg, None, negative=True, ttl=10.0)
        negative = cache.lookup(neg)
        assert negative is not None
        assert negative.negative
        clock.advance(10.0)
        entry = cache.lookup(key)
        assert entry is not None
        assert entry.stale
        assert entry.value == [1, 2]
        assert cache.lookup(neg) is None
        clock.advance(100.0)
        assert cache.lookup(key) is None


def test_purge_removes_entries_past_grace(db: Path) -> None:
    """Every purge_every writes, rows past stale_until are deleted from the file."""
    clock = FakeClock()
    backend = SqliteBackend(db, purge_every=5)
    cache = CacheManager(backend=backend, clock=clock, jitter=0.0, stale_grace=0.0)
    for i in range(4):
        cache.store(cache.key("spotify:track", str(i)), i, ttl=1.0)
    clock.advance(2.0)
    cache.store(cache.key("spotify:track", "new"), 1)  # fifth write purges
    assert len(backend) == 1
    cache.close()


def test_another_process_sees_our_writes_and_we_see_its(db: Path) -> None:
    """Two processes share one file."""
    with CacheManager.sqlite(db) as cache:
        cache.store(cache.key("spotify:track", "ours"), {"from": "parent"})
        child = _run_child(
            """
            import sys
            from tunegate.cache import CacheManager
            cache = CacheManager.sqlite(sys.argv[1])
            print(cache.get(cache.key("spotify:track", "ours"))["from"])
            cache.store(cache.key("spotify:track", "theirs"), {"from": "child"})
            cache.close()
            """,
            str(db),
        )
        out, err = child.communicate(timeout=20)
        assert child.returncode == 0, err
        assert out.strip() == "parent"
        assert cache.get(cache.key("spotify:track", "theirs")) == {"from": "child"}


def test_killed_writer_leaves_a_readable_file(db: Path) -> None:
    """SIGKILL a process in the middle of large writes, three times: the file passes
    integrity_check, earlier entries read back intact, and writing goes on."""
    writer = """
        import sys
        from tunegate.cache import CacheManager
        cache = CacheManager.sqlite(sys.argv[1])
        blob = "x" * 300_000
        i = 0
        while i < 100_000:  # bounded; killed long before
            cache.store(cache.key("spotify:track", f"{sys.argv[2]}-{i % 40}"), [i, blob])
            if i == 3:
                print("writing", flush=True)
            i += 1
        """
    with CacheManager.sqlite(db) as cache:
        cache.store(cache.key("spotify:track", "before"), TRACK)
        for round_ in range(3):
            child = _run_child(writer, str(db), f"r{round_}")
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "writing"
            time.sleep(0.05 + 0.07 * round_)
            child.send_signal(signal.SIGKILL)
            child.communicate(timeout=20)
            assert child.returncode == -signal.SIGKILL
            assert _integrity(db) == "ok"
            assert cache.get(cache.key("spotify:track", "before")) == TRACK
            seen = 0
            for i in range(40):
                entry = cache.lookup(cache.key("spotify:track", f"r{round_}-{i}"))
                if entry is not None:
                    assert len(entry.value[1]) == 300_000  # never a torn value
                    seen += 1
            assert seen >= 4
            cache.store(cache.key("spotify:track", "after"), round_)
            assert cache.get(cache.key("spotify:track", "after")) == round_
        assert cache.get_stats()["errors"] == 0


def test_threads_share_one_file(db: Path) -> None:
    """Four threads, each with its own connection, write and read without errors."""
    cache = CacheManager.sqlite(db)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(60):
                key = cache.key("spotify:search", f"t{n}", str(i))
                cache.store(key, {"n": n, "i": i})
                assert cache.get(key) == {"n": n, "i": i}
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not failures
    assert cache.get_stats()["errors"] == 0
    assert cache.invalidate_pattern("spotify:search:*") == 240
    cache.close()


def test_invalidate_pattern_in_batches(db: Path) -> None:
    """More matches than one delete batch; non-matching keys and user globs stay literal."""
    with CacheManager.sqlite(db) as cache:
        for i in range(1200):
            cache.store(cache.key("spotify:search", "many", str(i)), i)
        cache.store(cache.key("spotify:search", "*", "x"), 1)
        cache.store(cache.key("spotify:search", "éx", "y"), 1)
        cache.store(cache.key("spotify:track", "keep"), 1)
        assert cache.invalidate_pattern(cache.pattern("spotify:search", "*")) == 1
        assert cache.invalidate_pattern(cache.pattern("spotify:search", "many")) == 1200
        assert cache.invalidate_pattern("spotify:search:?x:*") == 0  # '?' is one byte...
        assert cache.invalidate_pattern("spotify:search:??x:*") == 1  # ...as in Redis
        assert cache.get(cache.key("spotify:track", "keep")) == 1
        assert cache.invalidate("spotify:track", "keep") == 1


def test_corrupt_row_is_a_miss_and_an_error(db: Path) -> None:
    """A damaged value reads as a miss and counts an error; it never raises."""
    with CacheManager.sqlite(db) as cache:
        key = cache.key("spotify:track", "x")
        cache.store(key, TRACK)
        conn = sqlite3.connect(db)
        conn.execute("UPDATE tunegate_cache SET value = x'7b2262726f6b' WHERE key = ?", (key,))
        conn.commit()
        conn.close()
        assert cache.lookup(key) is None
        stats = cache.get_stats()
        assert (stats["misses"], stats["errors"]) == (1, 1)


def test_unusable_file_fails_open(tmp_path: Path) -> None:
    """A file that is not a database: reads are misses, writes dropped, nothing raises."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a sqlite database" * 100)
    with CacheManager.sqlite(path) as cache:
        key = cache.key("spotify:track", "x")
        assert cache.lookup(key) is None
        assert cache.store(key, {"a": 1}) == {"a": 1}
        assert cache.get(key) is None
        assert cache.invalidate("spotify:track", "x") == 0
        assert cache.invalidate_pattern("spotify:*") == 0
        stats = cache.get_stats()
        assert stats["errors"] == 5
        assert stats["per_provider"]["spotify"]["errors"] == 4


def test_closed_cache_fails_open(db: Path) -> None:
    """After close(), calls are misses and dropped writes, not exceptions."""
    cache = CacheManager.sqlite(db)
    key = cache.key("spotify:track", "x")
    cache.store(key, 1)
    cache.close()
    assert cache.lookup(key) is None
    cache.store(key, 2)
    assert cache.get_stats()["errors"] == 2


async def test_async_api(db: Path) -> None:
    """astore / alookup / ainvalidate / ainvalidate_pattern on SQLite."""
    async with CacheManager.sqlite(db) as cache:
        key = cache.key("spotify:track", "x")
        await cache.astore(key, TRACK)
        entry = await cache.alookup(key)
        assert entry is not None
        assert entry.value == TRACK
        await cache.aset(cache.key("spotify:track", "y"), 1)
        assert await cache.ainvalidate("spotify:track", "x") == 1
        assert await cache.ainvalidate_pattern("spotify:*") == 1
        assert await cache.aget(key) is None


async def test_async_first_read_opens_off_the_event_loop(db: Path) -> None:
    """The event loop's first alookup opens the file and creates the schema in a worker
    thread: while another connection holds the write lock that needs, the loop keeps
    running, and the read completes (no error) once the lock is released."""
    db.parent.mkdir(parents=True)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("BEGIN IMMEDIATE")  # the write lock creating our table must wait for
    holder.execute("CREATE TABLE other_app (x)")
    cache = CacheManager.sqlite(db, busy_timeout=20.0)
    key = cache.key("spotify:track", "x")
    read = asyncio.create_task(cache.alookup(key))
    ticks = 0
    for _ in range(20):  # the loop runs other work meanwhile
        await asyncio.sleep(0.005)
        ticks += 1
    assert ticks == 20
    assert not read.done()  # still waiting for the lock, in its thread
    holder.execute("COMMIT")
    assert await asyncio.wait_for(read, 20.0) is None
    assert cache.get_stats()["errors"] == 0  # it waited and read; it did not time out
    await cache.astore(key, 1)
    assert await cache.aget(key) == 1
    await cache.aclose()
    holder.close()


async def test_concurrent_first_reads_on_one_loop(db: Path) -> None:
    """Many first reads at once on one loop settle on one connection for the loop."""
    cache = CacheManager.sqlite(db)
    key = cache.key("spotify:track", "x")
    await asyncio.to_thread(cache.store, key, 1)  # in a worker: the loop's thread has none yet
    backend = cache.backend
    assert isinstance(backend, SqliteBackend)
    opened_before = len(backend._conns)
    values = await asyncio.gather(*(cache.aget(key) for _ in range(8)))
    assert values == [1] * 8
    assert len(backend._conns) == opened_before + 1  # extra ones opened in a race are closed
    await cache.aclose()
