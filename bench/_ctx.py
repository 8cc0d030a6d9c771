"""The state every figure shares in one ``bench/run``: the private Redis, the emulator
process, its token, the search queries (distinct catalogue tracks) and the sample length."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from _infra import CountingProxy, EmulatorProcess, RedisServer, private_redis

from tunegate import AsyncSpotifyClient, CacheManager, SpotifyClient
from tunegate.emulator import DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET, Emulator

LIFTED = 1e9  # a client-side rate that never binds: these figures measure the path, not pacing


@dataclass
class Ctx:
    quick: bool
    seconds: float
    redis: RedisServer
    emu: EmulatorProcess
    token: str
    queries: list[tuple[str, str]]  # (artist, title) of distinct catalogue tracks
    catalog: Emulator  # not started: its catalogue (the emulator process has the same seed)
    memo: dict[str, Any] = field(default_factory=dict)  # shared results within one repeat

    @classmethod
    def start(cls, quick: bool) -> Ctx:
        redis = private_redis()
        emu = EmulatorProcess(rate_limits=False)
        token = httpx.post(
            f"{emu.root}/api/token",
            data={"grant_type": "client_credentials"},
            auth=(DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET),
        ).json()["access_token"]
        catalog = Emulator(rate_limits=False)
        queries = []
        for i in range(catalog.catalog.size):
            t = catalog.describe_track(i)
            artist, title = t["artists"][0], t["title"]
            if '"' not in artist + title and "\\" not in artist + title:
                queries.append((artist, title))
            if len(queries) >= 2500:
                break
        return cls(quick, 0.1 if quick else 0.4, redis, emu, token, queries, catalog)

    def close(self) -> None:
        self.emu.close()
        self.redis.close()

    # -- the request both tunegate and the bare clients send ----------------------------------
    @property
    def search_url(self) -> str:
        return f"{self.emu.root}/v1/search"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @staticmethod
    def params(artist: str, title: str) -> dict[str, str]:
        # What SpotifyClient.search_track sends (providers/spotify.py search_track_request).
        return {"q": f'track:"{title}" artist:"{artist}"', "type": "track", "limit": "10"}

    def cycle(self, start: int = 0) -> Iterator[tuple[str, str]]:
        return itertools.cycle(self.queries[start:] + self.queries[:start])

    # -- tunegate clients, limits lifted, through the public constructors ----------------------
    def spotify(self, cache: CacheManager | None, **options: Any) -> SpotifyClient:
        return SpotifyClient(
            DEFAULT_SPOTIFY_CLIENT_ID,
            DEFAULT_SPOTIFY_CLIENT_SECRET,
            cache_manager=cache,
            base_url=self.emu.root,
            rate=LIFTED,
            capacity=10**9,
            **options,
        )

    async def aspotify(self, cache: CacheManager | None, **options: Any) -> AsyncSpotifyClient:
        await asyncio.sleep(0)  # built inside the loop that will use it
        return AsyncSpotifyClient(
            DEFAULT_SPOTIFY_CLIENT_ID,
            DEFAULT_SPOTIFY_CLIENT_SECRET,
            cache_manager=cache,
            base_url=self.emu.root,
            rate=LIFTED,
            capacity=10**9,
            **options,
        )

    def redis_proxy(self) -> CountingProxy:
        return CountingProxy(self.redis.port)

    def upstream_total(self) -> int:
        return int(self.emu.stats()["total"])
