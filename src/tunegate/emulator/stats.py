"""What ``/_emulator/stats`` reports: requests per provider, endpoint and status, the highest
rate seen per client (in the provider's own quota window), and the faults injected.

Clients are named as each provider's quota sees them: a Spotify app by its client id (not a
secret), MusicBrainz and Last.fm callers by IP address. API keys, secrets and tokens never
appear here.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stats"]


@dataclass
class _ClientRate:
    window: float
    times: deque[float] = field(default_factory=deque)
    requests: int = 0
    max_in_window: int = 0

    def add(self, now: float) -> None:
        self.requests += 1
        self.times.append(now)
        horizon = now - self.window
        while self.times[0] <= horizon:
            self.times.popleft()
        self.max_in_window = max(self.max_in_window, len(self.times))


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self._clients: dict[tuple[str, str], _ClientRate] = {}
        self._faults: dict[tuple[str, str, str], int] = defaultdict(int)
        self.internal_errors = 0

    def arrival(self, provider: str, client: str, window: float, now: float) -> None:
        rate = self._clients.get((provider, client))
        if rate is None or rate.window != window:
            rate = self._clients[(provider, client)] = _ClientRate(window)
        rate.add(now)

    def response(self, provider: str, endpoint: str, status: int) -> None:
        self._counts[(provider, endpoint, status)] += 1

    def fault(self, provider: str, endpoint: str, kind: str) -> None:
        self._faults[(provider, endpoint, kind)] += 1

    def snapshot(self) -> dict[str, Any]:
        providers: dict[str, Any] = {}
        for (provider, endpoint, status), n in sorted(self._counts.items()):
            entry = providers.setdefault(provider, {"total": 0, "by_status": {}, "endpoints": {}})
            entry["total"] += n
            entry["by_status"][str(status)] = entry["by_status"].get(str(status), 0) + n
            ep = entry["endpoints"].setdefault(endpoint, {"total": 0, "by_status": {}})
            ep["total"] += n
            ep["by_status"][str(status)] = n
        clients: dict[str, Any] = {}
        for (provider, client), rate in sorted(self._clients.items()):
            clients.setdefault(provider, {})[client] = {
                "requests": rate.requests,
                "window_seconds": rate.window,
                "max_in_window": rate.max_in_window,
                "max_rate_per_second": rate.max_in_window / rate.window,
            }
        faults: dict[str, Any] = {}
        for (provider, endpoint, kind), n in sorted(self._faults.items()):
            faults.setdefault(provider, {}).setdefault(endpoint, {})[kind] = n
        return {
            "requests": providers,
            "total": sum(self._counts.values()),
            "clients": clients,
            "faults": faults,
            "internal_errors": self.internal_errors,
        }
