"""``Send``: the effect where a call reaches the socket (:class:`tunegate._http.HttpPool`).

The flows (:meth:`tunegate.pipeline.Pipeline.flow` and the parts it holds) yield effects
and are sent their results, or have their exceptions thrown in, by the one driver loop of
the public call (:func:`tunegate._drive.drive` / ``adrive``). The other leaf effects
(``Sleep``, ``Poll``, ``AwaitFlight``) live in :mod:`tunegate._drive`, which imports nothing
of the policy layer, so every layer (the limiter too) uses the same classes. The breaker and
the limiter bring their own flows (composed with ``yield from``); Redis commands and
scripts are ``tunegate._redis.RedisCall``/``ScriptCall`` effects, failing open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunegate._drive import Effect

if TYPE_CHECKING:
    from tunegate._http import HttpPool, HttpRequest, HttpResponse

__all__ = ["Send"]


@dataclass(slots=True)
class Send(Effect):
    http: HttpPool
    request: HttpRequest
    timeout: float | None
    patient: bool = False  # ``timeout`` replaces the HTTP total timeout instead of capping it

    def run(self) -> HttpResponse:
        return self.http.send(self.request, timeout=self.timeout, patient=self.patient)

    async def arun(self) -> HttpResponse:
        return await self.http.asend(self.request, timeout=self.timeout, patient=self.patient)
