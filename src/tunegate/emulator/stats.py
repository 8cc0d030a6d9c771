"""What ``/_emulator/stats`` reports: requests per provider, endpoint and status, the highest
rate seen per client (in the provider's own quota window, counted by the limiter's rule), and
the faults injected, and the throttling acts (quota refusals, held answers, blocks).

Clients are named as each provider's quota sees them: a Spotify app by its client id (not a
secret), MusicBrainz and Last.fm callers by IP address. API keys, secrets and tokens never
appear here. At most ``MAX_CLIENTS`` clients per provider are named; later newcomers are
counted together as ``"(others)"``, so a long run with many callers stays bounded.

A request whose connection the emulator dropped (a hang, a reset or close mid-body) is
counted under the status ``"dropped"``: the client never saw a status line it could trust.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from tunegate.emulator.ratelimits import RollingWindow

__all__ = ["DROPPED", "MAX_CLIENTS", "OTHERS", "Stats"]

MAX_CLIENTS = 10_000
OTHERS = "(others)"
DROPPED = "dropped"


class _ClientRate:
    __slots__ = ("last_second", "max_in_window", "max_per_second", "recent", "requests", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.recent = RollingWindow(window)
        self.last_second: deque[float] = deque()  # exact 1 s window: the "highest rate seen"
        self.requests = 0
        self.max_in_window = 0
        self.max_per_second = 0

    def add(self, now: float) -> None:
        self.requests += 1
        self.recent.expire(now)
        self.recent.times.append(now)
        self.max_in_window = max(self.max_in_window, len(self.recent.times))
        second = self.last_second
        while second and second[0] <= now - 1.0:
            second.popleft()
        second.append(now)
        self.max_per_second = max(self.max_per_second, len(second))


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = defaultdict(int)
        self._clients: dict[tuple[str, str], _ClientRate] = {}
        self._named: dict[str, int] = defaultdict(int)  # provider -> clients named
        self._faults: dict[tuple[str, str, str], int] = defaultdict(int)
        self._throttled: dict[tuple[str, str], float] = defaultdict(float)
        self.internal_errors = 0

    def arrival(self, provider: str, client: str, window: float, now: float) -> None:
        key = (provider, client)
        rate = self._clients.get(key)
        if rate is None:
            if self._named[provider] >= MAX_CLIENTS:
                key = (provider, OTHERS)
                rate = self._clients.get(key)
            else:
                self._named[provider] += 1
        if rate is None or rate.window != window:
            rate = self._clients[key] = _ClientRate(window)
        rate.add(now)

    def response(self, provider: str, endpoint: str, status: int | str) -> None:
        """Count one answer: an HTTP status, or ``DROPPED``."""
        self._counts[(provider, endpoint, str(status))] += 1

    def fault(self, provider: str, endpoint: str, kind: str) -> None:
        self._faults[(provider, endpoint, kind)] += 1

    def throttle(self, provider: str, kind: str, amount: float = 1) -> None:
        """Count a throttling act: ``rejected`` (over quota, refused), ``delayed`` (answer
        held), ``delay_seconds`` (time held), ``blocked`` (refused by a block), ``blocks``
        (blocks started)."""
        self._throttled[(provider, kind)] += amount

    def snapshot(self) -> dict[str, Any]:
        providers: dict[str, Any] = {}
        for (provider, endpoint, status), n in sorted(self._counts.items()):
            entry = providers.setdefault(provider, {"total": 0, "by_status": {}, "endpoints": {}})
            entry["total"] += n
            entry["by_status"][status] = entry["by_status"].get(status, 0) + n
            ep = entry["endpoints"].setdefault(endpoint, {"total": 0, "by_status": {}})
            ep["total"] += n
            ep["by_status"][status] = n
        clients: dict[str, Any] = {}
        for (provider, client), rate in sorted(self._clients.items()):
            clients.setdefault(provider, {})[client] = {
                "requests": rate.requests,
                "window_seconds": rate.window,
                "max_in_window": rate.max_in_window,
                "max_per_second": rate.max_per_second,
            }
        faults: dict[str, Any] = {}
        for (provider, endpoint, kind), n in sorted(self._faults.items()):
            faults.setdefault(provider, {}).setdefault(endpoint, {})[kind] = n
        throttled: dict[str, dict[str, float]] = {}
        for (provider, kind), amount in sorted(self._throttled.items()):
            entry = throttled.setdefault(
                provider, dict.fromkeys(("rejected", "delayed", "blocked", "blocks"), 0)
            )
            entry[kind] = round(amount, 3) if kind == "delay_seconds" else int(amount)
        return {
            "requests": providers,
            "total": sum(self._counts.values()),
            "clients": clients,
            "faults": faults,
            "throttled": throttled,
            "internal_errors": self.internal_errors,
        }
