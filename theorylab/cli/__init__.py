"""The ``theorylab`` command line (layer 7): the only package that imports typer; nothing imports it.

Each verb group is one module, imported here explicitly and in the order ``theorylab --help``
shows the groups: a module that fails to import is an error at start-up, never a silently missing
command.
"""

import importlib

from theorylab.cli.app import app, entry, finish, main

VERB_MODULES = ("runs", "claims", "sweep", "measure", "scaling", "emergence", "construct",
                "construct_subleq", "construct_turing")
for _name in VERB_MODULES:
    importlib.import_module(f"theorylab.cli.{_name}")  # registers its verbs on `app`
finish(app)  # every verb gets the shared grammar (checked numbers, plain flags)

__all__ = ["app", "entry", "main", "VERB_MODULES"]
