"""Built-in instruments generated in code (no files needed)."""

from .nicer_like import nicer_like_spectrum

__all__ = ["nicer_like_spectrum"]
