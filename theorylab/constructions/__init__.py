"""Data-free transformers with hand-set weights, checked against closed forms."""

from theorylab.constructions.chiang import Residual, evaluate, first, parity

__all__ = ["parity", "first", "evaluate", "Residual"]
