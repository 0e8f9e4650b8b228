"""``python -m theorylab`` and the ``theorylab`` console script.

:func:`entry` imports the command line inside a guard: a Ctrl-C while the heavy modules load (torch takes a
second or two) ends with one line and exit 130, as it does once the command runs, not with a traceback."""

import sys


def entry() -> None:
    """Run the command line (:func:`theorylab.cli.entry`); exit 130 with one line on Ctrl-C during start-up."""
    try:
        from theorylab.cli import entry as cli_entry
    except KeyboardInterrupt:
        print("theorylab: interrupted (SIGINT) while starting; nothing ran", file=sys.stderr)
        sys.exit(130)
    cli_entry()


if __name__ == "__main__":
    entry()
