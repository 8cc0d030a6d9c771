"""``python -m tunegate.service [--host H] [--port P] [--sandbox]``."""

from __future__ import annotations

import argparse

from tunegate.service.app import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="tunegate serve",
        description="The gateway as an HTTP service (credentials from the environment).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--sandbox", action="store_true")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.sandbox)


if __name__ == "__main__":
    main()
