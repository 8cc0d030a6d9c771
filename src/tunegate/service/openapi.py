"""The OpenAPI 3.1 document, generated from the declarations the routes are built from:
:data:`tunegate.service.api.ENDPOINTS` (parameters; result schemas from the client
methods' return annotations, through pydantic's JSON Schema of the ``TypedDict`` results),
:data:`OPERATIONS` for the other routes, and the problem types of
:mod:`tunegate.service.errors`. :func:`openapi_document` refuses a route that is not
declared, so the document cannot fall behind the app."""

from __future__ import annotations

import collections.abc
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from starlette.routing import BaseRoute, Route

from tunegate.service.api import DEADLINE_HEADER, ENDPOINTS, MAX_DEADLINE, Endpoint, Param
from tunegate.service.errors import PROBLEM, PROBLEMS

__all__ = ["DOCS_HTML", "OPERATIONS", "Operation", "openapi_document"]

_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Operation:
    """A route outside ``/v1``: what the document says of it."""

    path: str
    method: str
    summary: str
    tag: str
    content: str = "application/json"
    responses: tuple[int, ...] = (200,)
    admin: bool = False
    body: dict[str, Any] | None = None
    params: tuple[Param, ...] = ()


_NAME = Param("name", "path", "Breaker name (spotify, spotify:accounts, musicbrainz, lastfm).")
_PROVIDER = Param("provider", "path", "Provider name (spotify, musicbrainz, lastfm).")
_PATH = Param("path", "path", "The provider's own path below its prefix.")


def _object(required: Sequence[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": props}


_NUMBER = {"type": "number", "exclusiveMinimum": 0}

OPERATIONS: tuple[Operation, ...] = (
    Operation("/healthz", "GET", "Liveness: the process answers", "operations"),
    Operation(
        "/readyz",
        "GET",
        "Readiness: backends answer (Redis ping)",
        "operations",
        "application/json",
        (200, 503),
    ),
    Operation("/metrics", "GET", "Prometheus exposition", "operations", "text/plain"),
    Operation("/status.json", "GET", "What the status page shows", "operations"),
    Operation("/admin/stats", "GET", "Every client's stats", "admin", admin=True),
    Operation("/admin/breakers", "GET", "Every breaker's state", "admin", admin=True),
    Operation(
        "/admin/breakers/{name}/reset",
        "POST",
        "Close a breaker",
        "admin",
        responses=(200, 422),
        admin=True,
        params=(_NAME,),
    ),
    Operation(
        "/admin/cache/invalidate",
        "POST",
        "Forget cache entries by key parts or pattern",
        "admin",
        responses=(200, 422),
        admin=True,
        body={
            "type": "object",
            "properties": {
                "kind": {"type": "string", "minLength": 1},
                "parts": {"type": "array", "items": {"type": "string"}},
                "pattern": {"type": "string", "minLength": 1},
                "scoped": {"type": "boolean"},
            },
        },
    ),
    Operation(
        "/admin/limits/{provider}/pause",
        "POST",
        "No upstream call for N seconds",
        "admin",
        responses=(200, 422),
        admin=True,
        params=(_PROVIDER,),
        body=_object(["seconds"], seconds=_NUMBER),
    ),
    Operation(
        "/admin/limits/{provider}/resume",
        "POST",
        "End a provider's pause now (an admin pause or the provider's Retry-After)",
        "admin",
        responses=(200, 422),
        admin=True,
        params=(_PROVIDER,),
    ),
    Operation(
        "/admin/limits/{provider}/rate",
        "POST",
        "Change (or reset) a provider's rate",
        "admin",
        responses=(200, 422),
        admin=True,
        params=(_PROVIDER,),
        body={
            "type": "object",
            "properties": {"rate": _NUMBER, "capacity": _NUMBER, "reset": {"type": "boolean"}},
        },
    ),
    Operation(
        "/spotify/api/token",
        "POST",
        "A service-issued token (client credentials form)",
        "pass-through",
        responses=(200, 400, 401),
    ),
    Operation(
        "/spotify/v1/{path}",
        "GET",
        "Spotify Web API, through the gateway",
        "pass-through",
        responses=(200, 401, 404, 429, 502, 503, 504),
        params=(_PATH,),
    ),
    Operation(
        "/musicbrainz/ws/2/{path}",
        "GET",
        "MusicBrainz web service, through the gateway",
        "pass-through",
        "application/octet-stream",
        (200, 400, 404, 503),
        params=(_PATH,),
    ),
    Operation(
        "/lastfm/2.0/",
        "GET",
        "Last.fm read methods, through the gateway",
        "pass-through",
        "application/octet-stream",
        (200, 400, 403, 503),
    ),
    Operation(
        "/lastfm/2.0/",
        "POST",
        "Last.fm read methods (as pylast sends them)",
        "pass-through",
        "application/octet-stream",
        (200, 400, 403, 503),
    ),
)


def _param_schema(p: Param) -> dict[str, Any]:
    if p.kind == "boolean":
        return {"type": "string", "enum": ["true", "false", "1", "0"]}
    schema: dict[str, Any] = {"type": "string", "maxLength": p.max_length}
    if p.required:
        schema["minLength"] = 1
        schema["pattern"] = r"\S"  # blank is refused as missing
    return schema


def _parameters(params: Sequence[Param]) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "in": p.where,
            "required": p.required or p.where == "path",
            "description": p.description,
            "schema": _param_schema(p),
        }
        for p in params
    ]


def _result_type(endpoint: Endpoint) -> Any:
    result = endpoint.result
    if callable(result) and not isinstance(result, type) and typing.get_origin(result) is None:
        result = typing.get_type_hints(result)["return"]
    if typing.get_origin(result) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(result) if a is not type(None)]
        if len(args) == 1:
            return args[0]  # None is answered as a 404 problem
    return result


def json_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a result annotation: builtins, unions, lists, dicts, ``Literal``
    and ``TypedDict`` (as a ``$ref`` into ``defs``). Written here because pydantic refuses
    ``typing.TypedDict`` before Python 3.12, and the results are plain TypedDicts."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if origin in (typing.Required, typing.NotRequired):
        return json_schema(args[0], defs)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [json_schema(a, defs) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        return {"type": "array", "items": json_schema(args[0], defs) if args else {}}
    if origin in (dict, collections.abc.Mapping):
        return {"type": "object", "additionalProperties": json_schema(args[1], defs)}
    if typing.is_typeddict(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: a recursive type refers to itself
            hints = typing.get_type_hints(tp)
            defs[name] = {
                "type": "object",
                "properties": {k: json_schema(v, defs) for k, v in hints.items()},
                "required": sorted(tp.__required_keys__),
            }
        return {"$ref": _REF.format(model=name)}
    raise TypeError(f"no JSON Schema for {tp!r}")


_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _schemas() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    defs: dict[str, Any] = {}
    return {e.op_id: json_schema(_result_type(e), defs) for e in ENDPOINTS}, defs


_PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "enum": sorted({PROBLEM + p.kind for p in PROBLEMS})},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "the offending input (422)"},
        "provider": {"type": "string"},
    },
}
_DESCRIPTIONS = {
    200: "OK",
    400: "Bad request (the provider's own error shape)",
    401: "Missing or wrong token",
    403: "Refused",
    404: "Not found",
    422: "Invalid input; `field` names it",
    429: "Rate limited; `Retry-After` says when to come back",
    500: "Gateway error",
    502: "Upstream error or malformed upstream answer",
    503: "Breaker open, provider unavailable or not configured; `Retry-After` when known",
    504: "Deadline exceeded (the request's, or the provider's timeout)",
}


def _problem_response(status: int) -> dict[str, Any]:
    kinds = sorted(p.kind for p in PROBLEMS if p.status == status)
    described = _DESCRIPTIONS.get(status, "Error")
    if kinds:
        described += ". Types: " + ", ".join(kinds)
    out: dict[str, Any] = {
        "description": described,
        "content": {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}},
    }
    if status in (429, 503):
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return out


_X_CACHE = {
    "X-Cache": {
        "description": "hit (every part from the cache), miss, or stale (served for a failure)",
        "schema": {"type": "string", "enum": ["hit", "miss", "stale"]},
    }
}


def _v1_operation(e: Endpoint, schema: dict[str, Any]) -> dict[str, Any]:
    deadline = {
        "name": DEADLINE_HEADER,
        "in": "header",
        "required": False,
        "description": f"Seconds this request may take (at most {MAX_DEADLINE:g}); 504 after.",
        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DEADLINE},
    }
    responses: dict[str, Any] = {
        "200": {
            "description": "OK",
            "headers": _X_CACHE,
            "content": {"application/json": {"schema": schema}},
        }
    }
    for status in sorted({*e.errors, 422}):
        responses[str(status)] = _problem_response(status) | {"headers": _X_CACHE}
        if status in (429, 503):
            responses[str(status)]["headers"] = _X_CACHE | {
                "Retry-After": {"schema": {"type": "integer"}}
            }
    op: dict[str, Any] = {
        "operationId": e.op_id,
        "summary": e.summary,
        "tags": [e.tag],
        "parameters": [*_parameters(e.params), deadline],
        "responses": responses,
    }
    if e.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": e.body}},
        }
    return op


def _other_operation(o: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in o.responses:
        if status == 200:
            responses["200"] = {"description": "OK", "content": {o.content: {"schema": {}}}}
        elif o.tag == "pass-through" or (status == 503 and o.path == "/readyz"):
            responses[str(status)] = {"description": _DESCRIPTIONS.get(status, "Error")}
        else:
            responses[str(status)] = _problem_response(status)
    if o.admin:
        responses["401"] = _problem_response(401)
    op: dict[str, Any] = {
        "operationId": re.sub(r"[^a-z0-9]+", "_", f"{o.method} {o.path}".lower()).strip("_"),
        "summary": o.summary,
        "tags": [o.tag],
        "parameters": _parameters(o.params),
        "responses": responses,
    }
    if o.admin:
        op["security"] = [{"admin": []}]
    if o.body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": o.body}}}
    return op


def _template(route: Route) -> str:
    # Starlette's {path:path} convertor is OpenAPI's plain {path}.
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)


_CALLER_SCHEMES = {
    "callerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "callerBearer": {"type": "http", "scheme": "bearer"},
}


def openapi_document(routes: Sequence[BaseRoute], *, caller_keys: bool = False) -> dict[str, Any]:
    """The document for ``routes``; raises ``LookupError`` for a schema route that neither
    :data:`ENDPOINTS` nor :data:`OPERATIONS` declares. ``caller_keys``: the service
    requires callers' API keys, so every ``/v1`` operation says so (and may answer 401)."""
    from tunegate import __version__

    results, defs = _schemas()
    declared: dict[tuple[str, str], dict[str, Any]] = {}
    for e in ENDPOINTS:
        v1 = declared[(e.path, e.method)] = _v1_operation(e, results[e.op_id])
        if caller_keys:
            v1["security"] = [{"callerKey": []}, {"callerBearer": []}]
            v1["responses"]["401"] = _problem_response(401)
    for o in OPERATIONS:
        declared[(o.path, o.method)] = _other_operation(o)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        path = _template(route)
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            op = declared.get((path, method))
            if op is None:
                raise LookupError(f"route {method} {path} is not declared for the OpenAPI document")
            paths.setdefault(path, {})[method.lower()] = op
    schemas = dict(defs)
    schemas["Problem"] = _PROBLEM_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tunegate",
            "version": __version__,
            "description": "A caching, rate-limiting gateway to Spotify, MusicBrainz and "
            "Last.fm. Errors are application/problem+json (RFC 9457).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer"},
                **(_CALLER_SCHEMES if caller_keys else {}),
            },
        },
    }


# A page with no external assets (the service may run where there is no internet): it
# fetches /openapi.json and lists every operation with its parameters and responses.
DOCS_HTML = (resources.files("tunegate.service") / "static" / "docs.html").read_text("utf-8")
