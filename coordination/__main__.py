"""``python -m coordination``: the ``coordination`` command."""

from .cli import run

if __name__ == "__main__":
    run()
