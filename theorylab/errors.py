"""The one exception type theorylab raises for bad input.

Every configuration, argument or file problem the user can fix raises
:class:`TheoryLabError` with a single-line message that names the field (or file)
and what is allowed.  The CLI prints that line on stderr and exits with code 2.
"""

from __future__ import annotations


class TheoryLabError(Exception):
    """A problem with user input: a config, an argument, a file or a checkpoint."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(TheoryLabError):
    """An invalid configuration value or an unknown key."""


class CheckpointError(TheoryLabError):
    """A checkpoint that is missing, truncated, corrupt or does not match the model."""


class StoreError(TheoryLabError):
    """The run store cannot find or accept what was asked."""


class RunFailedError(Exception):
    """A run or a claim that could not finish (not bad input): the CLI prints one line and exits 1."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
