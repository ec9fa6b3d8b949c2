"""`pytest-innovator`: commands around the plugin (checking task files, listing agents)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .task import TaskError, find_tasks, load_task


def validate(paths: list[str]) -> int:
    """Load every task.toml below the paths; print each problem; exit 1 if any."""
    failures = 0
    found = 0
    for root in map(Path, paths):
        tomls = [root] if root.name == "task.toml" else find_tasks(root)
        for toml in tomls:
            found += 1
            try:
                task = load_task(toml)
            except TaskError as exc:
                failures += 1
                print(exc, file=sys.stderr)
            else:
                print(f"ok  {toml}  ({task.id}, {task.spec.domain})")
    if found == 0:
        print(f"no task.toml found under {', '.join(paths)}", file=sys.stderr)
        return 1
    return 1 if failures else 0


def list_agents() -> int:
    from .agents import available_agents

    for name in available_agents():
        print(name)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-innovator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="check task.toml files")
    check.add_argument("paths", nargs="+")
    commands.add_parser("agents", help="list the registered agents")
    args = parser.parse_args(argv)
    if args.command == "validate":
        return validate(args.paths)
    return list_agents()


if __name__ == "__main__":
    sys.exit(main())
