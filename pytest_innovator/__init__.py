"""pytest-innovator: run AI research-agent benchmarks as pytest items."""

__version__ = "0.1.0"
