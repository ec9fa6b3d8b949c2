"""The one base of every error the harness raises on purpose, and the install hint for extras."""

from __future__ import annotations


class InnovatorError(Exception):
    """An expected failure: bad input, a missing dependency, an unreachable service. The message
    says what to change; errors that are bugs are not InnovatorErrors and keep their traceback."""


def pip_hint(extra: str) -> str:
    """How to install one of the package's extras (pyproject.toml's optional-dependencies)."""
    return f"pip install 'pytest-innovator[{extra}]'"
