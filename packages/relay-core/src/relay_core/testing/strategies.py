"""Hypothesis strategies for Relay's inputs."""

from __future__ import annotations

from hypothesis import strategies as st

from ..keygen import ALGORITHMS
from ..model import Strategy

__all__ = ["algorithms", "fingerprints", "license_keys", "pool_names", "lease_strategies"]


def fingerprints(max_size: int = 64) -> st.SearchStrategy[str]:
    """Fingerprints as nodes send them: any text without '/' (a path segment)."""
    alphabet = st.characters(exclude_characters="/", exclude_categories=["Cs"])
    return st.text(alphabet, min_size=1, max_size=max_size)


def pool_names() -> st.SearchStrategy[str]:
    """Pool names (case-sensitive, non-empty)."""
    return st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=24)


def license_keys() -> st.SearchStrategy[str]:
    """License keys in Keygen's dashed style, and arbitrary printable ones."""
    dashed = st.lists(st.text("0123456789ABCDEF", min_size=6, max_size=6), min_size=5, max_size=5)
    return dashed.map(lambda parts: "-".join(parts) + "-V3") | st.text(
        st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64
    )


def algorithms() -> st.SearchStrategy[str]:
    """The six algorithms Keygen issues."""
    return st.sampled_from(ALGORITHMS)


def lease_strategies() -> st.SearchStrategy[Strategy]:
    """fifo, lifo, rand."""
    return st.sampled_from(list(Strategy))
