"""`pytest-innovator`: commands around the plugin (checking task files, listing agents and backends, leaderboards,
plots, HTML reports, the progress of a running benchmark, guidance to a running item, runs as training data)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from .errors import pip_hint
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


def list_backends() -> int:
    """Each workspace backend: whether it can run here (or why not), its extra, what it protects."""
    from .backends import BACKENDS, BackendSettings, BackendUnavailable, default_backend

    default = default_backend()
    for backend in BACKENDS.values():
        try:
            # Default settings: the docker check looks for the default image; remote says what to set.
            backend.check(BackendSettings())
            state = "available" + (" (the default here)" if backend.name == default else "")
        except BackendUnavailable as exc:
            state = f"unavailable: {exc}"
        extra = f"  [needs {pip_hint(backend.extra)}]" if backend.extra else ""
        print(f"{backend.name}: {state}\n  protects: {backend.protects}{extra}")
    return 0


def list_agents() -> int:
    from .agents import available_agents

    for name in available_agents():
        print(name)
    return 0


def leaderboard(
    inputs: list[str], json_out: str | None, markdown_out: str | None, update: str | None, force: bool
) -> int:
    from .reporting import leaderboard as lb
    from .reporting.result_inputs import InputError, read_inputs

    if not (json_out or markdown_out or update):
        print("nothing to write: give --json OUT.json, --markdown OUT.md or --update LEADERBOARD.json", file=sys.stderr)
        return 2
    try:
        items = read_inputs(Path(p) for p in inputs)
        existing = lb.load(Path(update)) if update and Path(update).exists() else None
        board = lb.merge(existing, items, force=force, sources=inputs)
    except (InputError, lb.LeaderboardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    added = board["history"][-1]["items_added"] if board is not existing else 0
    for target in {t for t in (json_out, update) if t}:
        if board is not existing or target != update:
            lb.save(board, Path(target))
    if markdown_out:
        Path(markdown_out).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_out).write_text(lb.to_markdown(board), encoding="utf-8")
    print(
        f"{len(items)} items read, {added} new; leaderboard of {len(board['agents'])} agents, "
        f"{len(board['tasks'])} tasks, {len(board['runs'])} runs"
    )
    return 0


def plots(inputs: list[str], out: str) -> int:
    from .reporting.result_inputs import InputError

    try:
        from .reporting.plots import write_plots
    except ImportError as exc:
        print(f"error: plots need matplotlib ({exc}); {pip_hint('report')}", file=sys.stderr)
        return 1
    try:
        written = write_plots([Path(p) for p in inputs], Path(out))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def report(run_dir: str, out: str | None) -> int:
    from .reporting.html_report import ReportError, write_report

    try:
        path = write_report(Path(run_dir), Path(out) if out else None)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def status(results_dir: str, run_id: str | None, all_runs: bool, as_json: bool, watch: float | None) -> int:
    from .reporting.status import StatusError, show_status

    try:
        return show_status(Path(results_dir), run_id=run_id, all_runs=all_runs, as_json=as_json, watch_s=watch)
    except StatusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def watch(results_dir: str, port: int) -> int:
    from .reporting.watch import WatchError
    from .reporting.watch import watch as serve_page

    try:
        return serve_page(Path(results_dir), port)
    except WatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def snapshot(item_dir: str) -> int:
    from .snapshots.store import take_on_demand

    try:
        info = take_on_demand(Path(item_dir))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"snapshot {info.name}: {info.files} files, {info.bytes_added} bytes added, {info.seconds:.2f}s")
    return 0


def copy_workspace(item_dir: str, dest: str) -> int:
    from .workspace import WorkspaceError, copy_final_workspace

    try:
        copy_final_workspace(Path(item_dir), Path(dest))
    except (WorkspaceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"the final workspace of {item_dir} is in {dest}")
    return 0


def guide(item_dir: str, text: str, author: str, action: str) -> int:
    """guide, pause or resume one running item (guidance.py)."""
    from . import guidance

    item = Path(item_dir)
    try:
        if action == "guide":
            message = guidance.send(item, text, author)
            print(f"guidance {message['id']} for {item}: the agent reads it after its current step")
        elif action == "pause":
            guidance.pause(item)
            print(
                f"{item} pauses after its current step (its working time keeps running); resume it with "
                f"pytest-innovator resume {item}"
            )
        elif guidance.release(item):
            print(f"{item} goes on")
        else:
            print(f"{item} was not paused")
    except guidance.GuidanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def label(item_dir: str, step: int | None, drop: str | None, keep: str | None, author: str) -> int:
    from .training.labels import LabelError
    from .training.labels import label as make_labels

    if step is not None and not (drop or keep):
        print("error: with --step, give --drop WHY or --keep WHY", file=sys.stderr)
        return 2
    if (drop or keep) and step is None:
        print("error: --drop and --keep mark one step: give --step N", file=sys.stderr)
        return 2
    mark = None
    if step is not None:
        mark = {"step": step, "label": "drop" if drop else "keep", "reason": drop or keep, "author": author}
    try:
        labels = make_labels(Path(item_dir), mark)
    except LabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    dropped = [entry for entry in labels["steps"] if entry["label"] == "drop"]
    print(f"{len(labels['steps'])} steps labelled, {len(dropped)} dropped; {Path(item_dir) / 'labels.json'}")
    for entry in dropped:
        print(f"  step {entry['step']}: drop ({entry['source']}) {entry['reason']}")
    return 0


def export(
    inputs: list[str],
    out: str | None,
    check: str | None,
    min_score: float | None,
    domains: list[str],
    agents: list[str],
) -> int:
    from .training.export import ExportError, ExportFilter, check_file
    from .training.export import export as write_export

    if check:
        problems = check_file(Path(check))
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"{check}: every line is a valid chat fine-tuning example")
        return 1 if problems else 0
    if not inputs or not out:
        print("error: give RUN_DIR... and -o FILE (or --check FILE)", file=sys.stderr)
        return 2
    selection = ExportFilter(min_score, tuple(domains), tuple(agents))
    try:
        items, examples, without_log = write_export([Path(p) for p in inputs], Path(out), selection)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{examples} examples from {items} items in {out}")
    for item in without_log:
        print(f"left out {item}: no llm_messages.jsonl (only the react agent and imported runs record the context)")
    return 0


def import_researchgym(nodes: list[str], out: str, task: str, domain: str) -> int:
    from .training.researchgym import NodeImportError, import_nodes

    try:
        steps = import_nodes([Path(p) for p in nodes], Path(out), task, domain)
    except NodeImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{steps} steps imported into {out}; label it with pytest-innovator label {out}")
    return 0


def slurm_tx(gpus: list[int], srun_args: str, directory: Path | None, python: str) -> int:
    import shlex

    from .hosts.slurm import SlurmError, tx_arguments

    try:
        arguments = tx_arguments(gpus, directory, python, shlex.split(srun_args))
    except SlurmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(" ".join(arguments))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-innovator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="check task.toml files")
    check.add_argument("paths", nargs="+")
    commands.add_parser("agents", help="list the registered agents")
    commands.add_parser("backends", help="list the workspace backends: can each run here, and what it protects")
    board = commands.add_parser("leaderboard", help="a leaderboard (JSON and Markdown) from results logs and JUnit XML")
    board.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="results.jsonl, a results directory (--innovator-results) or a JUnit XML file (*.xml)",
    )
    board.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the leaderboard as JSON")
    board.add_argument("--markdown", dest="markdown_out", metavar="OUT.md", help="write the leaderboard as Markdown")
    board.add_argument(
        "--update",
        metavar="LEADERBOARD.json",
        help="merge the inputs into this leaderboard (created if missing), keeping its history",
    )
    board.add_argument("--force", action="store_true", help="merge results of another task version anyway")
    plot = commands.add_parser(
        "plots", help="PNG and SVG plots: score over working time, performance profiles, domains"
    )
    plot.add_argument("inputs", nargs="+", metavar="INPUT", help="as for leaderboard, or a leaderboard JSON file")
    plot.add_argument("--out", required=True, metavar="DIR")
    html = commands.add_parser("report", help="one self-contained HTML file for a run")
    html.add_argument("run_dir", metavar="RUN_DIR", help="<results>/runs/<run id> (or one item's directory)")
    html.add_argument("--out", metavar="FILE", help="default: RUN_DIR/report.html")
    progress = commands.add_parser(
        "status", help="live progress of a run: each item's step, working time, evaluations, best score"
    )
    progress.add_argument("results_dir", metavar="RESULTS_DIR", help="the directory given to --innovator-results")
    progress.add_argument("--run", dest="run_id", metavar="RUN_ID", help="this run (default: the latest)")
    progress.add_argument("--all", dest="all_runs", action="store_true", help="every run in RESULTS_DIR")
    progress.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    progress.add_argument("--watch", type=float, metavar="SECONDS", help="print again every SECONDS until nothing runs")
    live = commands.add_parser(
        "watch",
        help="a live page of RESULTS_DIR's items on 127.0.0.1 (its URL, with a token, is printed): status, "
        "evaluations, trajectory tail, guidance, pause/resume, keep/drop marks",
    )
    live.add_argument("results_dir", metavar="RESULTS_DIR", help="the directory given to --innovator-results")
    live.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    serve = commands.add_parser(
        "serve", help="the session server: workspaces and sessions over HTTP (remote and docker backends)"
    )
    serve.add_argument(
        "--workspace", type=Path, metavar="DIR", help="serve this existing directory as workspace 'main'"
    )
    serve.add_argument(
        "--root", type=Path, metavar="DIR", help="let clients create workspaces (POST /v1/workspaces) in DIR"
    )
    serve.add_argument(
        "--log-dir", type=Path, metavar="DIR", help="session logs of the --workspace (default: a temporary directory)"
    )
    serve.add_argument(
        "--read-only",
        action="append",
        default=[],
        metavar="PATH",
        help="a file of the --workspace that the file tools refuse to write (repeatable)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=int, default=0, help="port (default: any free port; the address is printed)")
    serve.add_argument("--uds", type=Path, metavar="PATH", help="listen on this unix socket instead of TCP")
    serve.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help="file holding the bearer token, created with a new token if missing "
        "(default: a new file in a temporary directory; its path is printed)",
    )
    serve.add_argument(
        "--sandbox",
        choices=("auto", "on", "off"),
        default="auto",
        help="run commands in bubblewrap (no network for the --workspace's commands): auto (where "
        "bwrap works), on, off (e.g. inside a container, which is the sandbox there)",
    )
    serve.add_argument(
        "--gpus",
        metavar="IDS",
        help="the GPUs it leases to harnesses (GET/POST /v1/leases), e.g. 0,1,2,3; '' for none "
        "(default: those NVML finds)",
    )
    serve.add_argument("--ssl-certfile", metavar="F", help="serve HTTPS with this certificate (with --ssl-keyfile)")
    serve.add_argument("--ssl-keyfile", metavar="F")
    final = commands.add_parser(
        "workspace", help="copy an item's workspace as it ended (an overlay's layers combined) into DEST"
    )
    final.add_argument("item_dir", metavar="ITEM_DIR", help="<results>/runs/<run id>/<task id>")
    final.add_argument("dest", metavar="DEST", help="a directory that does not exist yet")
    snap = commands.add_parser("snapshot", help="snapshot one item of a running or finished run, now")
    snap.add_argument("item_dir", metavar="RUN_DIR/ITEM", help="<results>/runs/<run id>/<task id>")
    to_item = commands.add_parser(
        "guide", help="send a running item's agent guidance it reads at its next step, marked as a person's"
    )
    to_item.add_argument("item_dir", metavar="RUN_DIR/ITEM", help="<results>/runs/<run id>/<task id>")
    to_item.add_argument("text", help="the message")
    to_item.add_argument("--author", default=getpass.getuser(), help="who sends it (default: the login name)")
    for name, what in (
        ("pause", "hold a running item's agent after its current step"),
        ("resume", "release a paused item"),
    ):
        held = commands.add_parser(name, help=f"{what} (the working time keeps running)")
        held.add_argument("item_dir", metavar="RUN_DIR/ITEM", help="<results>/runs/<run id>/<task id>")
    labelling = commands.add_parser(
        "label", help="keep/drop labels for every step of a finished item, into labels.json beside its trajectory"
    )
    labelling.add_argument("item_dir", metavar="RUN_DIR/ITEM", help="<results>/runs/<run id>/<task id>")
    labelling.add_argument("--step", type=int, metavar="N", help="a person's mark on step N (wins over the rules)")
    mark = labelling.add_mutually_exclusive_group()
    mark.add_argument("--drop", metavar="WHY", help="mark step N dropped, and why")
    mark.add_argument("--keep", metavar="WHY", help="mark step N kept, and why")
    labelling.add_argument("--author", default=getpass.getuser(), help="who marks (default: the login name)")
    out = commands.add_parser("export", help="finished items as training data (JSONL), dropped steps with weight 0")
    out.add_argument("inputs", nargs="*", metavar="RUN_DIR", help="item, run or results directories")
    out.add_argument("--format", choices=("openai-chat",), default="openai-chat")
    out.add_argument("-o", "--out", metavar="FILE", help="the JSONL file to write")
    out.add_argument("--check", metavar="FILE", help="check every line of FILE against the format instead")
    out.add_argument("--min-score", type=float, metavar="SCORE", help="only items whose final score is at least SCORE")
    out.add_argument("--domain", action="append", default=[], help="only items of this domain (repeatable)")
    out.add_argument("--agent", action="append", default=[], help="only items of this agent, e.g. react (repeatable)")
    rg = commands.add_parser(
        "import-researchgym", help="ResearchGym (InnovatorBench) node files as an item's trajectory and message log"
    )
    rg.add_argument(
        "nodes", nargs="+", metavar="NODE_FILE", help="nodes/react_<uuid>_<time>.json, every step of one run"
    )
    rg.add_argument("-o", "--out", required=True, metavar="RUN_DIR", help="a new item directory to write")
    rg.add_argument("--task", default="researchgym", help="the task id to record (default: researchgym)")
    rg.add_argument("--domain", default="", help="the task's domain, for export --domain")
    slurm = commands.add_parser(
        "slurm-tx",
        help="pytest's --tx arguments for xdist workers started through srun, each with the GPUs it asks for: "
        "pytest SUITE $(pytest-innovator slurm-tx --gpus 2 --gpus 4)",
    )
    slurm.add_argument(
        "--gpus", type=int, action="append", required=True, metavar="N", help="one worker holding N GPUs (repeatable)"
    )
    slurm.add_argument(
        "--srun-args", default="", metavar="ARGS", help="more srun options, e.g. '--partition=gpu --time=48:00:00'"
    )
    slurm.add_argument(
        "--dir",
        dest="directory",
        type=Path,
        metavar="DIR",
        help="where the wrapper scripts go (default: a temporary directory)",
    )
    slurm.add_argument(
        "--python", default=sys.executable, help="the workers' python, at this path on the nodes (default: this one)"
    )
    args = parser.parse_args(argv)
    if args.command == "validate":
        return validate(args.paths)
    if args.command == "snapshot":
        return snapshot(args.item_dir)
    if args.command == "workspace":
        return copy_workspace(args.item_dir, args.dest)
    if args.command in ("guide", "pause", "resume"):
        return guide(args.item_dir, getattr(args, "text", ""), getattr(args, "author", ""), args.command)
    if args.command == "label":
        return label(args.item_dir, args.step, args.drop, args.keep, args.author)
    if args.command == "export":
        return export(args.inputs, args.out, args.check, args.min_score, args.domain, args.agent)
    if args.command == "import-researchgym":
        return import_researchgym(args.nodes, args.out, args.task, args.domain)
    if args.command == "slurm-tx":
        return slurm_tx(args.gpus, args.srun_args, args.directory, args.python)
    if args.command == "leaderboard":
        return leaderboard(args.inputs, args.json_out, args.markdown_out, args.update, args.force)
    if args.command == "plots":
        return plots(args.inputs, args.out)
    if args.command == "report":
        return report(args.run_dir, args.out)
    if args.command == "status":
        return status(args.results_dir, args.run_id, args.all_runs, args.as_json, args.watch)
    if args.command == "watch":
        return watch(args.results_dir, args.port)
    if args.command == "serve":
        from .remote.server import serve_command

        return serve_command(args)
    if args.command == "backends":
        return list_backends()
    return list_agents()


if __name__ == "__main__":
    sys.exit(main())
