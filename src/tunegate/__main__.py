"""``python -m tunegate``: the same as the ``tunegate`` command."""

from tunegate._entry import main

main()
