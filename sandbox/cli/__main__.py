"""``python -m sandbox.cli``."""

from sandbox.cli import app

app()
