"""Named hook points, TransformerLens style.

A :class:`HookPoint` sits on an activation.  With no hook attached it returns its
input untouched at the cost of one attribute check, so the training path stays fast.
A hook is ``fn(activation, hook) -> activation | None``; returning a tensor replaces
the activation (ablation, patching), returning None leaves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]


class HookPoint:
    __slots__ = ("name", "fns", "loop")

    def __init__(self, name: str):
        self.name = name
        self.fns: list[HookFn] = []
        self.loop = 0  # which application of a looped stack is running

    @property
    def active(self) -> bool:
        return bool(self.fns)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fns:
            return x
        for fn in self.fns:
            out = fn(x, self)
            if out is not None:
                x = out
        return x

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r}, {len(self.fns)} hooks)"


class HookedMixin:
    """Gives a module ``hook_points``, ``run_with_hooks`` and ``run_with_cache``."""

    hook_points: dict[str, HookPoint]

    def _register_hook_point(self, name: str) -> HookPoint:
        hp = HookPoint(name)
        self.hook_points[name] = hp
        return hp

    def hook_names(self) -> list[str]:
        return list(self.hook_points)

    def _resolve(self, name: str | Callable[[str], bool]) -> list[HookPoint]:
        if callable(name):
            return [hp for n, hp in self.hook_points.items() if name(n)]
        if name not in self.hook_points:
            raise KeyError(f"no hook point {name!r}; e.g. {', '.join(list(self.hook_points)[:6])}, ...")
        return [self.hook_points[name]]

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]]):
        """Attach hooks for the duration of a ``with`` block."""
        added: list[tuple[HookPoint, HookFn]] = []
        try:
            for name, fn in fwd_hooks:
                for hp in self._resolve(name):
                    hp.fns.append(fn)
                    added.append((hp, fn))
            yield self
        finally:
            for hp, fn in added:
                hp.fns.remove(fn)

    def run_with_hooks(self, *args, fwd_hooks=(), **kwargs):
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(self, *args, names_filter: str | list[str] | Callable[[str], bool] | None = None,
                       detach: bool = True, **kwargs):
        """Run the model and return ``(output, cache)``; cache maps hook names to activations.

        In a looped model (``n_loops > 1``) the cache holds the last application under
        the plain name and every application ``l`` under ``name#l``.
        """
        if names_filter is None:
            names = list(self.hook_points)
        elif isinstance(names_filter, str):
            names = [names_filter]
        elif callable(names_filter):
            names = [n for n in self.hook_points if names_filter(n)]
        else:
            names = list(names_filter)
        cache: dict[str, torch.Tensor] = {}
        n_loops = getattr(getattr(self, "cfg", None), "n_loops", 1)

        def save(x: torch.Tensor, hp: HookPoint):
            v = x.detach() if detach else x
            cache[hp.name] = v
            if n_loops > 1:
                cache[f"{hp.name}#{hp.loop}"] = v
            return None

        with self.hooks([(n, save) for n in names]):
            out = self(*args, **kwargs)
        return out, cache
