"""``python -m tunegate.service [--host H] [--port P] [--sandbox]``: ``tunegate serve``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from tunegate.cli import app  # one option parser: the CLI's

    app(["serve", *(sys.argv[1:] if argv is None else argv)], prog_name="tunegate")


if __name__ == "__main__":
    main()
