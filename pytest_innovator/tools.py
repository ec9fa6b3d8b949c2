"""The agent's action space: tools with JSON-schema arguments (OpenAI function format) and handlers.

Each tool's arguments are a pydantic model (unknown keys rejected), so a model's bad arguments
become a precise error observation it can correct. Handlers work through the Workspace protocol
and the environment's methods only.
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .sessions import CommandResult

if TYPE_CHECKING:
    from .env import ResearchEnv

READ_WINDOW_DEFAULT = 100
MAX_READ_LINES = 2000
MAX_WAIT_S = 1800.0
MAX_OUTPUT_BYTES = 32 * 1024


@dataclass
class Observation:
    tool: str
    ok: bool
    output: str
    data: dict[str, Any] = field(default_factory=dict)
    done: bool = False

    def __str__(self) -> str:
        return self.output if self.ok else f"ERROR: {self.output}"


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- files -----------------------------------------------------------------------------------


class ListFiles(ToolArgs):
    path: str = Field(".", description="Directory, relative to the workspace root.")
    depth: int = Field(1, ge=1, le=5, description="How many levels to descend.")


class ReadFile(ToolArgs):
    path: str = Field(description="File to read.")
    start_line: int = Field(1, ge=1, description="First line to show (1-based).")
    num_lines: int = Field(READ_WINDOW_DEFAULT, ge=1, le=MAX_READ_LINES, description="How many lines to show.")


class WriteFile(ToolArgs):
    path: str = Field(description="File to create or overwrite.")
    content: str = Field(description="The whole new content.")


class EditFile(ToolArgs):
    path: str = Field(description="File to edit.")
    old: str = Field(min_length=1, description="Exact text to replace; must occur exactly once.")
    new: str = Field(description="Replacement text.")


class SearchFiles(ToolArgs):
    pattern: str = Field(min_length=1, description="Extended regular expression (grep -E).")
    path: str = Field(".", description="Directory or file to search.")


class FindFiles(ToolArgs):
    name: str = Field(min_length=1, description="File name glob, e.g. '*.py'.")
    path: str = Field(".", description="Directory to search below.")


# --- sessions --------------------------------------------------------------------------------


class CreateSession(ToolArgs):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_\-]{1,32}$", description="Optional session name.")


class CreateSessionOnHost(CreateSession):
    host: str | None = Field(
        None, description="Which of your hosts (list_hosts) it runs on; default: the first. Its name is HOST/NAME."
    )


class RunCommand(ToolArgs):
    session: str = Field(description="Session to run in (create_session first).")
    command: str = Field(min_length=1, description="Shell command (bash). Multi-line is fine.")
    wait: float = Field(
        10.0,
        ge=0,
        le=MAX_WAIT_S,
        description="Seconds to wait for completion before returning; the command keeps running after.",
    )


class SendInput(ToolArgs):
    session: str
    text: str = Field(description="Text to type; include '\\n' to press enter.")


class ReadOutput(ToolArgs):
    session: str
    since: int = Field(0, ge=0, description="Byte offset to read from (the next_offset of an earlier observation).")
    max_bytes: int = Field(MAX_OUTPUT_BYTES, ge=1, le=256 * 1024)


class SessionName(ToolArgs):
    session: str


class NoArgs(ToolArgs):
    pass


# --- system ----------------------------------------------------------------------------------


class Think(ToolArgs):
    thought: str = Field(description="Your reasoning; no effect on the workspace.")


class Wait(ToolArgs):
    seconds: float = Field(gt=0, le=MAX_WAIT_S, description="Longest time to wait.")
    session: str | None = Field(
        None, description="Return early when this session's command finishes (default: any session's)."
    )


class Finish(ToolArgs):
    summary: str = Field("", description="What you did and what the deliverables are.")


class GiveUp(ToolArgs):
    reason: str = Field("", description="Why you stop.")


Handler = Callable[["ResearchEnv", Any], Observation]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[ToolArgs]
    handler: Handler

    def openai_schema(self) -> dict[str, Any]:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        schema.setdefault("properties", {})
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": schema},
        }


def _ok(tool: str, output: str, **data: Any) -> Observation:
    return Observation(tool, True, output, data)


def list_files(env: ResearchEnv, a: ListFiles) -> Observation:
    entries = env.workspace.list_dir(a.path, a.depth)
    lines = [
        f"{e.path}/"
        if e.kind == "dir"
        else f"{e.path} ({e.size} bytes)"
        if e.kind == "file"
        else f"{e.path} [{e.kind}]"
        for e in entries
    ]
    return _ok("list_files", "\n".join(lines) or "(empty)")


def read_file(env: ResearchEnv, a: ReadFile) -> Observation:
    text = env.workspace.read_file(a.path).decode("utf-8", "replace")
    lines = text.splitlines()
    end = min(len(lines), a.start_line - 1 + a.num_lines)
    window = [f"{n:6d}  {lines[n - 1]}" for n in range(a.start_line, end + 1)]
    header = f"[{a.path}: lines {a.start_line}-{end} of {len(lines)}]"
    return _ok("read_file", "\n".join([header, *window]), total_lines=len(lines))


def write_file(env: ResearchEnv, a: WriteFile) -> Observation:
    env.workspace.write_file(a.path, a.content.encode("utf-8"))
    return _ok("write_file", f"wrote {len(a.content.encode('utf-8'))} bytes to {a.path}")


def edit_file(env: ResearchEnv, a: EditFile) -> Observation:
    text = env.workspace.read_file(a.path).decode("utf-8")
    count = text.count(a.old)
    if count != 1:
        where = "not found" if count == 0 else f"found {count} times; include more context to make it unique"
        return Observation("edit_file", False, f"{a.path}: the text to replace was {where}")
    env.workspace.write_file(a.path, text.replace(a.old, a.new, 1).encode("utf-8"))
    return _ok("edit_file", f"edited {a.path}")


def _grep_like(env: ResearchEnv, tool: str, command: str) -> Observation:
    result = env.workspace.exec(command, timeout=60)
    if result.exit_code is None:
        return Observation(tool, False, "search took longer than 60 s; narrow the path")
    lines = result.output.splitlines()
    shown = lines[:200]
    more = f"\n[{len(lines) - 200} more lines not shown]" if len(lines) > 200 else ""
    return _ok(tool, ("\n".join(shown) or "(no matches)") + more)


def _search_root(env: ResearchEnv, path: str) -> str:
    """A path for grep/find that cannot leave the workspace (neither follows symlinks while walking)."""
    if path.startswith("/"):
        root = env.workspace.root.rstrip("/")
        if path != root and not path.startswith(root + "/"):
            raise ValueError(f"{path}: outside the workspace ({env.workspace.root})")
        path = path[len(root) :].lstrip("/") or "."
    if ".." in path.split("/"):
        raise ValueError(f"{path}: '..' is not allowed; give a path inside the workspace")
    return shlex.quote(path)


def search_files(env: ResearchEnv, a: SearchFiles) -> Observation:
    target = _search_root(env, a.path)
    return _grep_like(env, "search_files", f"grep -rnIE -e {shlex.quote(a.pattern)} -- {target} 2>&1 | cut -c1-300")


def find_files(env: ResearchEnv, a: FindFiles) -> Observation:
    return _grep_like(env, "find_files", f"find {_search_root(env, a.path)} -name {shlex.quote(a.name)} 2>&1")


def describe_command(result: CommandResult) -> str:
    if result.done:
        state = f"finished, exit code {result.exit_code}"
    else:
        state = "still running; use read_output or wait, do not kill it unless it is stuck"
    more = " (more output follows; read_output from next_offset)" if result.truncated else ""
    return (
        f"[session {result.session} · command {result.command_id} · {state}]\n{result.output}"
        f"\n[next_offset={result.next_offset}{more}]"
    )


def create_session(env: ResearchEnv, a: CreateSession) -> Observation:
    session = env.workspace.sessions.create(a.name)
    return _ok(
        "create_session",
        f"created session {session.name!r} in {env.workspace.root}\n[{env.workspace.protects}]",
        session=session.name,
    )


def create_session_on_host(env: ResearchEnv, a: CreateSessionOnHost) -> Observation:
    session = env.workspace.sessions.create(a.name, host=a.host)
    return _ok("create_session", f"created session {session.name!r}\n[{env.workspace.protects}]", session=session.name)


def list_hosts(env: ResearchEnv, a: NoArgs) -> Observation:
    held = env.workspace.held_hosts
    rows = [
        f"{host}{' (first: your files and the graded workspace)' if i == 0 else ''}: GPUs {','.join(gpus) or 'none'}"
        for i, (host, gpus) in enumerate(held.items())
    ]
    return _ok("list_hosts", "\n".join(rows), hosts=list(held))


def run_command(env: ResearchEnv, a: RunCommand) -> Observation:
    session = env.workspace.sessions.get(a.session)
    result = session.run(a.command, wait=min(a.wait, env.remaining_time_s), max_output=MAX_OUTPUT_BYTES)
    env.note_command(a.session, a.command)
    return _ok(
        "run_command",
        describe_command(result),
        done=result.done,
        exit_code=result.exit_code,
        next_offset=result.next_offset,
    )


def send_input(env: ResearchEnv, a: SendInput) -> Observation:
    env.workspace.sessions.get(a.session).send_input(a.text)
    return _ok("send_input", f"sent {len(a.text)} characters to {a.session}")


def read_output(env: ResearchEnv, a: ReadOutput) -> Observation:
    text, next_offset = env.workspace.sessions.get(a.session).read(a.since, a.max_bytes)
    return _ok("read_output", f"{text}\n[next_offset={next_offset}]", next_offset=next_offset)


def session_status(env: ResearchEnv, a: SessionName) -> Observation:
    s = env.workspace.sessions.get(a.session).status()
    state = "running: " + (s.command or "") if s.busy else f"idle (last exit code {s.last_exit_code})"
    return _ok(
        "session_status",
        f"{s.name}: {'alive' if s.alive else 'closed'}, {state}, output_end={s.output_end}",
        done=not s.busy,
        exit_code=s.last_exit_code,
        output_end=s.output_end,
    )


def list_sessions(env: ResearchEnv, a: NoArgs) -> Observation:
    rows = [f"{s.name}: {'running: ' + (s.command or '') if s.busy else 'idle'}" for s in env.workspace.sessions.list()]
    return _ok("list_sessions", "\n".join(rows) or "(no sessions)")


def interrupt(env: ResearchEnv, a: SessionName) -> Observation:
    env.workspace.sessions.get(a.session).interrupt()
    return _ok("interrupt", f"sent Ctrl-C to {a.session}")


def kill(env: ResearchEnv, a: SessionName) -> Observation:
    env.workspace.sessions.get(a.session).kill()
    return _ok("kill", f"killed every process started in {a.session}; the shell is still open")


def close_session(env: ResearchEnv, a: SessionName) -> Observation:
    env.workspace.sessions.close(a.session)
    return _ok("close_session", f"closed {a.session}")


def evaluate(env: ResearchEnv, a: NoArgs) -> Observation:
    return env.evaluate_for_agent()


def view_hint(env: ResearchEnv, a: NoArgs) -> Observation:
    return env.view_hint()


def think(env: ResearchEnv, a: Think) -> Observation:
    return _ok("think", "ok")


def wait(env: ResearchEnv, a: Wait) -> Observation:
    return env.wait(a.seconds, a.session)


def finish(env: ResearchEnv, a: Finish) -> Observation:
    env.end("finished")
    return Observation("finish", True, "episode finished; the final evaluation runs now", done=True)


def give_up(env: ResearchEnv, a: GiveUp) -> Observation:
    env.end("gave_up")
    return Observation("give_up", True, "episode ended; the final evaluation runs now", done=True)


_ALL_TOOLS = [
    Tool("list_files", "List files in a workspace directory.", ListFiles, list_files),
    Tool("read_file", "Read a window of lines of a text file.", ReadFile, read_file),
    Tool("write_file", "Create or overwrite a file with the given content.", WriteFile, write_file),
    Tool("edit_file", "Replace one exact occurrence of a text in a file.", EditFile, edit_file),
    Tool("search_files", "Search file contents for a regular expression.", SearchFiles, search_files),
    Tool("find_files", "Find files by name glob.", FindFiles, find_files),
    Tool(
        "create_session",
        "Open a new asynchronous shell session (bash) in the workspace.",
        CreateSession,
        create_session,
    ),
    Tool(
        "run_command",
        "Run a command in a session; returns when it finishes or after `wait` seconds, whichever comes first. "
        "Long jobs keep running in the background of the session.",
        RunCommand,
        run_command,
    ),
    Tool("send_input", "Type text into a session (for programs that read input).", SendInput, send_input),
    Tool("read_output", "Read a session's output from a byte offset.", ReadOutput, read_output),
    Tool("session_status", "Show whether a session is running a command.", SessionName, session_status),
    Tool("list_sessions", "List the open sessions.", NoArgs, list_sessions),
    Tool("interrupt", "Send Ctrl-C to the command running in a session.", SessionName, interrupt),
    Tool("kill", "Kill every process started in a session (the session stays open).", SessionName, kill),
    Tool("close_session", "Close a session and end its processes.", SessionName, close_session),
    Tool(
        "evaluate",
        "Grade the current deliverables with the hidden grader. Uses one of your limited evaluations.",
        NoArgs,
        evaluate,
    ),
    Tool("view_hint", "Show the task's hint. Costs a penalty on your score.", NoArgs, view_hint),
    Tool("think", "Write down your reasoning.", Think, think),
    Tool("wait", "Wait up to `seconds`; returns early when a running command finishes.", Wait, wait),
    Tool("finish", "End the episode: your deliverables are final.", Finish, finish),
    Tool("give_up", "End the episode without finishing.", GiveUp, give_up),
]

TOOLS: dict[str, Tool] = {tool.name: tool for tool in _ALL_TOOLS}

# MLGym's names for evaluating without ending the episode and for ending it with the final evaluation.
MLGYM_TOOLS = [
    Tool("validate", "Score the current submission without ending the episode.", NoArgs, evaluate),
    Tool("submit", "Submit: ends the episode; the final evaluation scores your submission.", Finish, finish),
]
MLGYM_REPLACES = ("evaluate", "finish")

# The modules of the optional tool groups (task.TOOL_GROUPS), imported only when a task offers them.
GROUP_MODULES = {
    "memory": "pytest_innovator.research_tools.memory",
    "web": "pytest_innovator.research_tools.web",
    "literature": "pytest_innovator.research_tools.literature",
    "documents": "pytest_innovator.research_tools.documents",
}


def action_space(groups: tuple[str, ...], *, spanning: bool = False) -> dict[str, Tool]:
    """The tools of an item: the core set (with sessions on each host when it spans hosts) and
    the optional groups its task offers. Each group module exports `TOOLS: list[Tool]`."""
    tools = dict(SPANNING_TOOLS if spanning else TOOLS)
    for group in groups:
        if group == "mlgym":
            for name in MLGYM_REPLACES:
                tools.pop(name)
            added = MLGYM_TOOLS
        else:
            added = importlib.import_module(GROUP_MODULES[group]).TOOLS
        tools.update((tool.name, tool) for tool in added)
    return tools


# An item that holds several hosts (hosts/spanning.py): sessions on any of them, and what each holds.
SPANNING_TOOLS: dict[str, Tool] = {
    **TOOLS,
    "create_session": Tool(
        "create_session",
        "Open a new asynchronous shell session (bash) on one of your hosts.",
        CreateSessionOnHost,
        create_session_on_host,
    ),
    "list_hosts": Tool("list_hosts", "List your hosts and the GPUs each holds.", NoArgs, list_hosts),
}
