"""The transformer family (see :mod:`theorylab.models.transformer`)."""

from theorylab.models.config import TransformerConfig
from theorylab.models.hooks import HookPoint
from theorylab.models.transformer import KVCache, Transformer, build_model

__all__ = ["TransformerConfig", "Transformer", "KVCache", "HookPoint", "build_model"]
