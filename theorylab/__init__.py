"""theorylab: an executable laboratory for the theory of large language models."""

__version__ = "0.1.0"

from theorylab.errors import TheoryLabError  # noqa: E402

__all__ = ["TheoryLabError", "__version__"]
