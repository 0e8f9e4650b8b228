"""The ``if __name__ == "__main__":`` check of the process-pool backend.

The ``local`` backend starts its workers with the ``spawn`` method: each worker imports the script that
``python script.py`` ran, as ``__mp_main__``.  A script that calls :func:`~theorylab.claims.engine.check`
or :func:`~theorylab.sweep.run_sweep` at its top level, outside an ``if __name__ == "__main__":`` block,
would start the sweep again in every worker, and Python stops each of them during its start-up; the
sweep would only see workers that died.  :func:`unguarded_main_call` finds such a call before any
worker starts, so the user reads what to change instead.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.ops) != 1:
        return False
    if not isinstance(node.test.ops[0], ast.Eq):
        return False
    sides = [node.test.left, node.test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and consts == ["__main__"]


def unguarded_main_call() -> tuple[str, int] | None:
    """``(script path, line)`` when the calling code runs from the top level of the ``__main__`` script
    outside an ``if __name__ == "__main__":`` block (spawned workers would run it again); None when there is
    no script (an interactive session, ``python -c``, a notebook, a test runner) or the call is guarded."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not Path(path).is_file() or not str(path).endswith(".py"):
        return None
    spec = getattr(main, "__spec__", None)
    if spec is not None and (spec.name == "__main__" or spec.name.endswith(".__main__")):
        return None  # python -m package: spawned workers do not run a package's __main__ again
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            break
        frame = frame.f_back
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    for node in tree.body:
        if node.lineno <= line <= (node.end_lineno or node.lineno):
            return None if _is_main_guard(node) else (str(path), line)
    return None


__all__ = ["unguarded_main_call"]
