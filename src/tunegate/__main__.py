"""``python -m tunegate``: the same as the ``tunegate`` command."""

from tunegate.cli import main

main()
