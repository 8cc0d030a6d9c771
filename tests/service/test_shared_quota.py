"""Two ``tunegate serve`` processes on one Redis share one quota: under load from both,
the emulator never sees more Last.fm calls in a second than one bucket allows."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx
import pytest

from tests._redis_server import RedisServer
from tunegate.emulator import Emulator, RateLimit
from tunegate.ratelimit import PROVIDER_DEFAULTS

from ._proc import serve_process

PER_PROCESS = 12  # 24 calls at once: one bucket admits 10 in a second, two unshared 20


@pytest.fixture
def emulator_settings() -> dict[str, Any]:
    # The emulator refuses nothing here; it only counts calls per one-second window.
    return {"catalog_size": 2_000, "lastfm_rate": RateLimit(100_000, 1.0)}


def test_two_processes_share_one_quota(emulator: Emulator, redis_server: RedisServer) -> None:
    env = {**emulator.env(), "TUNEGATE_REDIS_URL": redis_server.url}
    rate, capacity = PROVIDER_DEFAULTS["lastfm"]
    with serve_process(env=env) as (a, pa), serve_process(env=env) as (b, pb):

        def call(url: str, i: int) -> int:
            # Distinct per process too: identical calls would share one upstream call.
            artist = f"Nobody Number {i} of {url}"
            r = httpx.get(f"{url}/v1/lastfm/artist-tags", params={"artist": artist}, timeout=60)
            return r.status_code

        jobs = [(url, i) for i in range(PER_PROCESS) for url in (a, b)]
        with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
            statuses = list(pool.map(lambda job: call(*job), jobs))
        logs = pa.log() + pb.log()  # a Redis fallback would be logged there
    assert statuses == [200] * len(jobs)
    lastfm = emulator.stats()["clients"]["lastfm"]["127.0.0.1"]
    assert lastfm["requests"] == len(jobs)  # every call was a miss that reached the emulator
    # One bucket admits at most capacity + rate x 1 s in any second (10 here); two unshared
    # buckets admit twice that (26 measured without Redis). Tokens are granted on Redis's
    # clock and counted on arrival at the emulator: on this loaded machine the delay between
    # the two varies by up to about half a second, which packs a little more into a window.
    # Should Redis stall past the link's timeout, each process falls back to its share
    # (rate / members: issue 9's fleet share), so the bound holds then too.
    bound = capacity + rate * 1.6
    assert lastfm["max_in_window"] <= bound, (lastfm, logs)
