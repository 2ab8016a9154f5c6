"""``python -m visio_sim``: the same as the ``visio-sim`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
