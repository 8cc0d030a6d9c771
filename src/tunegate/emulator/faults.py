"""Fault injection: what can go wrong, for which provider and endpoint, and how often.

A :class:`FaultSpec` is one rule. Rules come from ``--faults``, from ``/_emulator/faults``
(JSON) or from :meth:`Emulator.set_faults`. Each rule draws from its own random stream per
(provider, endpoint), seeded from the emulator's seed, so the same sequence of requests
meets the same faults on every run; requests to other endpoints do not shift the draws.

The compact text form (``--faults``) is ``target:setting,setting;target:...``::

    spotify/search:error=503@0.2,latency=0.05;musicbrainz:outage=10;lastfm:hang@0.1

``target`` is ``provider`` or ``provider/endpoint`` (``*`` and shell patterns allowed);
settings are listed in docs/emulator.md.
"""

from __future__ import annotations

import fnmatch
import json
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "BODY_FAULTS",
    "FAULTS_HELP",
    "FaultInjector",
    "FaultPlan",
    "FaultSpec",
    "Latency",
    "parse_faults",
]

PROVIDERS = ("spotify", "musicbrainz", "lastfm")

FAULTS_HELP = """\
Faults: RULE;RULE;...  where RULE is TARGET:SETTING,SETTING,...
  TARGET   spotify | musicbrainz | lastfm | * , optionally /ENDPOINT (shell patterns allowed)
  error=STATUS[@P]     answer STATUS (4xx/5xx) with probability P (default 1)
  latency=D | latency=uniform(LOW,HIGH) | normal(MEAN,SD) | exp(MEAN)   added delay
  reset|close|truncate|malformed|drip|wrong_content_type|hang[@P]   broken responses
  outage=D  outage_status=503  retry_after=D  times=N  drip_seconds=D  hang_seconds=D
  Durations D: 300ms, 2s, 5m, 1h; a plain number is seconds.
Example: spotify/search:error=503@0.2,latency=300ms;musicbrainz:outage=10s;lastfm:hang@0.1
Full list: docs/emulator.md (Faults)."""
# Faults applied to a response on its way out, in the order they are drawn.
BODY_FAULTS = ("reset", "close", "truncate", "malformed", "drip", "wrong_content_type", "hang")
_DISTRIBUTIONS = {
    "fixed": ("seconds",),
    "uniform": ("low", "high"),
    "normal": ("mean", "stddev"),
    "exponential": ("mean",),
    "lognormal": ("mu", "sigma"),
}


@dataclass(frozen=True)
class Latency:
    """Added delay: a fixed number of seconds or a distribution (never negative)."""

    distribution: str = "fixed"
    params: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        names = _DISTRIBUTIONS.get(self.distribution)
        if names is None:
            raise ValueError(f"unknown latency distribution {self.distribution!r}")
        if len(self.params) != len(names) or not all(math.isfinite(p) for p in self.params):
            raise ValueError(f"{self.distribution} latency takes {', '.join(names)}")
        if any(p < 0 for p in self.params) and self.distribution != "lognormal":
            raise ValueError("latency parameters must not be negative")

    def sample(self, rng: random.Random) -> float:
        p = self.params
        match self.distribution:
            case "fixed":
                value = p[0]
            case "uniform":
                value = rng.uniform(p[0], p[1])
            case "normal":
                value = rng.gauss(p[0], p[1])
            case "exponential":
                value = rng.expovariate(1 / p[0]) if p[0] > 0 else 0.0
            case _:
                value = rng.lognormvariate(p[0], p[1])
        return min(max(value, 0.0), 600.0)

    def to_json(self) -> Any:
        if self.distribution == "fixed":
            return self.params[0]
        names = _DISTRIBUTIONS[self.distribution]
        return {"distribution": self.distribution, **dict(zip(names, self.params, strict=True))}

    @classmethod
    def from_json(cls, value: Any) -> Latency:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls("fixed", (float(value),))
        if isinstance(value, Mapping):
            dist = str(value.get("distribution", "fixed"))
            names = _DISTRIBUTIONS.get(dist)
            if names is None:
                raise ValueError(f"unknown latency distribution {dist!r}")
            try:
                return cls(dist, tuple(float(value[n]) for n in names))
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{dist} latency takes {', '.join(names)}") from exc
        raise ValueError("latency is seconds or {'distribution': ..., parameters}")


@dataclass(frozen=True)
class FaultSpec:
    """One fault rule. Probabilities are per matching request, in [0, 1]."""

    provider: str = "*"
    endpoint: str = "*"
    latency: Latency | None = None
    errors: tuple[tuple[int, float], ...] = ()  # (HTTP status, probability)
    retry_after: float = 1.0  # for injected 429 and 503 answers
    outage: float = 0.0  # seconds, from when the rule is installed: every request fails
    outage_status: int = 503
    reset: float = 0.0  # connection reset (RST) after part of the body
    close: float = 0.0  # connection closed (FIN) after part of the body
    truncate: float = 0.0  # a complete HTTP response whose body is cut short
    malformed: float = 0.0  # a body that is not valid JSON / XML
    drip: float = 0.0  # the body arrives slowly, over drip_seconds
    wrong_content_type: float = 0.0  # a 200 text/html page, as from a captive proxy
    hang: float = 0.0  # no answer until the client gives up (or hang_seconds pass)
    drip_seconds: float = 2.0
    hang_seconds: float = 300.0
    times: int | None = None  # apply to the first N matching requests only

    def __post_init__(self) -> None:
        if self.provider != "*" and self.provider not in PROVIDERS:
            raise ValueError(f"unknown provider {self.provider!r}")
        probs = [p for _, p in self.errors] + [getattr(self, k) for k in BODY_FAULTS]
        if not all(0.0 <= p <= 1.0 for p in probs):
            raise ValueError("fault probabilities must be between 0 and 1")
        if sum(probs) > 1.0 + 1e-9:
            raise ValueError("fault probabilities of one rule add up to more than 1")
        for status, _ in self.errors:
            if not 400 <= status <= 599:
                raise ValueError(f"error status {status} is not a 4xx or 5xx")
        if not 400 <= self.outage_status <= 599:
            raise ValueError("outage_status must be a 4xx or 5xx")
        for name in ("retry_after", "outage", "drip_seconds", "hang_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 86_400):
                raise ValueError(f"{name} must be between 0 and 86400 seconds")
        if self.times is not None and self.times < 0:
            raise ValueError("times must not be negative")

    def matches(self, provider: str, endpoint: str) -> bool:
        return (self.provider in ("*", provider)) and (
            self.endpoint == "*" or fnmatch.fnmatchcase(endpoint.lower(), self.endpoint.lower())
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "endpoint": self.endpoint}
        if self.latency is not None:
            out["latency"] = self.latency.to_json()
        if self.errors:
            out["errors"] = {str(s): p for s, p in self.errors}
        defaults = FaultSpec()
        for name in (
            "retry_after",
            "outage",
            "outage_status",
            *BODY_FAULTS,
            "drip_seconds",
            "hang_seconds",
            "times",
        ):
            if getattr(self, name) != getattr(defaults, name):
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultSpec:
        if not isinstance(data, Mapping):
            raise ValueError("a fault rule is a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "latency":
                kwargs[key] = None if value is None else Latency.from_json(value)
            elif key == "errors":
                kwargs[key] = _errors_from_json(value)
            elif key in ("provider", "endpoint"):
                if not isinstance(value, str):
                    raise ValueError(f"{key} must be a string")
                kwargs[key] = value
            elif key in ("outage_status", "times"):
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError(f"{key} must be an integer")
                kwargs[key] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{key} must be a number")
                kwargs[key] = float(value)
        return cls(**kwargs)


def _errors_from_json(value: Any) -> tuple[tuple[int, float], ...]:
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list):
        items = [(v, 1.0) if isinstance(v, int) else tuple(v) for v in value]
    else:
        raise ValueError("errors is {status: probability}")
    out = []
    for status, prob in items:
        try:
            code, p = int(status), float(prob)
        except (TypeError, ValueError) as exc:
            raise ValueError("errors is {status: probability}") from exc
        out.append((code, p))
    return tuple(out)


def parse_faults(spec: str | Any) -> list[FaultSpec]:
    """Rules from JSON (a list, ``{"rules": [...]}`` or one rule), already-parsed JSON, or the
    compact text form."""
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            return []
        if text[0] in "[{":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"faults: invalid JSON ({exc.msg})") from exc
            return parse_faults(data)
        return [_parse_rule(part) for part in text.split(";") if part.strip()]
    if isinstance(spec, FaultSpec):
        return [spec]
    if isinstance(spec, Mapping):
        if "rules" in spec and len(spec) == 1:
            return parse_faults(spec["rules"])
        return [FaultSpec.from_json(spec)]
    if isinstance(spec, list | tuple):
        return [r if isinstance(r, FaultSpec) else FaultSpec.from_json(r) for r in spec]
    raise ValueError("faults must be JSON rules or the compact text form")


def _parse_rule(text: str) -> FaultSpec:
    target, sep, settings = text.strip().partition(":")
    if not sep:
        target, settings = "*", target
    provider, _, endpoint = target.strip().partition("/")
    kwargs: dict[str, Any] = {"provider": provider or "*", "endpoint": endpoint or "*"}
    errors: list[tuple[int, float]] = []
    for item in _split_settings(settings):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        value = value.strip()
        prob = 1.0
        if "@" in key:  # "hang@0.1" means hang with probability 0.1
            key, _, p = key.partition("@")
            prob = _number(p, key)
        try:
            if key == "latency":
                kwargs["latency"] = _parse_latency(value)
            elif key == "error":
                code, _, p = value.partition("@")
                errors.append((int(code), _number(p, key) if p else 1.0))
            elif key in BODY_FAULTS:
                kwargs[key] = _number(value, key) if eq else prob
            elif key in ("outage_status", "times"):
                kwargs[key] = int(value)
            elif key in ("retry_after", "outage", "drip_seconds", "hang_seconds"):
                kwargs[key] = _duration(value, key)
            else:
                raise ValueError(f"unknown fault setting {key!r}")
        except ValueError as exc:
            raise ValueError(f"faults: {item.strip()!r}: {exc}") from exc
    kwargs["errors"] = tuple(errors)
    return FaultSpec(**kwargs)


def _split_settings(text: str) -> list[str]:
    """Split on commas outside parentheses (``latency=uniform(0.1,0.3),error=503``)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise ValueError(f"{name} needs a number, got {text!r}") from exc
    if not math.isfinite(value):
        raise ValueError(f"{name} needs a finite number")
    return value


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([-+0-9.eE]+|inf|nan)\s*([a-zA-Z]*)\s*$")


def _duration(text: str, name: str) -> float:
    """Seconds from ``"300ms"``, ``"2s"``, ``"5m"``, ``"3h"`` or a plain number (seconds)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{name} needs a duration such as 2 or 300ms (units ms, s, m, h), got {text!r}"
        )
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower() if unit else "s")
    if factor is None:
        raise ValueError(f"{name}: unknown unit {unit!r} in {text!r} (units ms, s, m, h)")
    return _number(number, name) * factor


def _parse_latency(text: str) -> Latency:
    name, paren, rest = text.partition("(")
    if not paren:
        return Latency("fixed", (_duration(text, "latency"),))
    dist = {"exp": "exponential", "gauss": "normal"}.get(name.strip(), name.strip())
    # lognormal's mu/sigma are log-space numbers, not durations
    parse = _number if dist == "lognormal" else _duration
    args = tuple(parse(a, "latency") for a in rest.rstrip(")").split(",") if a.strip())
    return Latency(dist, args)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What to do to one request: wait ``latency``, then fail with ``status`` or apply
    ``kind`` (one of BODY_FAULTS) to the response, or neither."""

    latency: float = 0.0
    status: int | None = None
    kind: str | None = None
    retry_after: float = 1.0
    drip_seconds: float = 2.0
    hang_seconds: float = 300.0
    outage: bool = False


NO_FAULT = FaultPlan()


@dataclass
class _Active:
    spec: FaultSpec
    position: int  # in the rule list: with the seed, what its random streams derive from
    since: float
    used: int = 0
    rngs: dict[tuple[str, str], random.Random] = field(default_factory=dict)


class FaultInjector:
    """Holds the active rules and decides, deterministically, what each request meets."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._active: list[_Active] = []

    def set(self, rules: Iterable[FaultSpec], now: float) -> None:
        self._active = []
        self.add(rules, now)

    def add(self, rules: Iterable[FaultSpec], now: float) -> None:
        # Seeded by position, not by how many rules were ever installed: the same rules
        # after a reset (or on a fresh emulator) meet the same draws.
        for rule in rules:
            self._active.append(_Active(rule, len(self._active), now))

    def clear(self) -> None:
        self._active = []

    def rules(self) -> list[FaultSpec]:
        return [a.spec for a in self._active]

    def decide(self, provider: str, endpoint: str, now: float) -> FaultPlan:
        if not self._active:
            return NO_FAULT
        latency = 0.0
        chosen: FaultPlan | None = None
        for active in self._active:
            spec = active.spec
            if not spec.matches(provider, endpoint):
                continue
            if spec.times is not None and active.used >= spec.times:
                continue
            rng = active.rngs.get((provider, endpoint))
            if rng is None:
                key = f"{self.seed}/{active.position}/{provider}/{endpoint}"
                rng = active.rngs[(provider, endpoint)] = random.Random(key)
            if spec.latency is not None:
                latency += spec.latency.sample(rng)
            draw = rng.random()  # drawn every time, so the stream does not depend on history
            # times=N counts the requests this rule acted on: its latency, or its decision
            # when no earlier rule had already chosen the request's fate.
            if spec.latency is not None or chosen is None:
                active.used += 1
            if chosen is not None:
                continue
            if spec.outage and now < active.since + spec.outage:
                chosen = FaultPlan(
                    status=spec.outage_status, retry_after=spec.retry_after, outage=True
                )
                continue
            chosen = _pick(spec, draw)
        if chosen is None:
            return FaultPlan(latency=latency) if latency else NO_FAULT
        return replace(chosen, latency=latency)


def _pick(spec: FaultSpec, draw: float) -> FaultPlan | None:
    edge = 0.0
    for status, p in spec.errors:
        edge += p
        if draw < edge:
            return FaultPlan(status=status, retry_after=spec.retry_after)
    for kind in BODY_FAULTS:
        edge += getattr(spec, kind)
        if draw < edge:
            return FaultPlan(
                kind=kind, drip_seconds=spec.drip_seconds, hang_seconds=spec.hang_seconds
            )
    return None
