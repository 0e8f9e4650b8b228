"""The ``theorylab`` command line (layer 7): the only package that imports typer; nothing imports it."""

from theorylab.cli.app import app, entry, main

__all__ = ["app", "entry", "main"]
