"""The layering rules the request path keeps, read from the source (issue 8): one Redis
seam, one module importing prometheus_client, no provider names in the generic policies."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tunegate

SRC = Path(tunegate.__file__).parent


def importers(top: str) -> set[str]:
    """The modules under src/tunegate with an import of ``top`` or one of its submodules."""
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name == top or name.startswith(top + ".") for name in names):
                found.add(path.relative_to(SRC).as_posix())
    return found


def test_only_the_redis_seam_imports_redis() -> None:
    assert importers("redis") == {"_redis.py"}


def test_only_observability_imports_prometheus_client() -> None:
    assert importers("prometheus_client") == {"observability.py"}


def test_the_generic_policies_name_no_provider() -> None:
    named = re.compile(r"spotify|lastfm|last\.fm|musicbrainz", re.IGNORECASE)
    offenders = [
        path.name
        for path in (SRC / "_policy").glob("*.py")
        if named.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
