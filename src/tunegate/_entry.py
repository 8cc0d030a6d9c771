"""The ``tunegate`` console script: the CLI lives in the ``cli`` extra (typer, rich), so a
library-only install gets a one-line install hint instead of a traceback."""

from __future__ import annotations

import sys

_CLI_PACKAGES = frozenset(
    {"typer", "rich", "click", "pydantic", "pydantic_settings", "platformdirs"}
)
HINT = "tunegate: the command line needs the 'cli' extra: pip install 'tunegate[cli]'"


def main() -> None:
    try:
        from tunegate.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _CLI_PACKAGES:
            raise
        print(HINT, file=sys.stderr)
        raise SystemExit(2) from None
    cli_main()
