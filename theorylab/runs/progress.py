"""Progress display of long work (the training loop, sweeps): a bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """A rich progress bar (done/total, a line of information, ETA) when stdout is a terminal; otherwise
    plain ``[label] step t/T ... eta Ns`` lines on stderr for the updates asked with ``force_line``, at
    most one per ``min_interval`` seconds (the first and the last always).  ``plain=False`` keeps it
    quiet when stdout is not a terminal."""

    def __init__(self, total: int, label: str, enabled: bool = True, start: int = 0,
                 min_interval: float = 1.0, plain: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.tty = enabled and sys.stdout.isatty()
        self.plain = plain
        self.t0 = time.perf_counter()
        self.start = start
        self.min_interval = min_interval
        self._last_line: float | None = None
        self._bar = None
        if self.tty:
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RP

            self._bar = RP(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                           TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, completed=start, info="")

    def update(self, step: int, info: str = "", force_line: bool = False) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
            return
        if not force_line or not self.plain:
            return
        now = time.perf_counter()
        if self._last_line is not None and step < self.total and now - self._last_line < self.min_interval:
            return
        self._last_line = now
        done = max(1, step - self.start)
        eta = (now - self.t0) / done * (self.total - step)
        print(f"[{self.label}] step {step}/{self.total} {info} eta {eta:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
