"""Checkout-wide pytest settings.

`fixtures/` holds deliberately broken tasks and data for the project's own tests, and `bench/`
holds benchmark scripts: neither is collected when pytest walks the whole checkout (`pytest .`).
The bundled suites under `task_suites/` are collected when named (`pytest task_suites/mini`).
"""

collect_ignore = ["fixtures", "bench"]
