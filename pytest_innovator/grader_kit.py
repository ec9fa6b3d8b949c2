"""The grader's side of the grading protocol (standard library only: any grader can import it).

A grader is a program the harness runs in a scratch directory outside the workspace. It reads one
JSON request from standard input::

    {"protocol": 1, "task_id": "...", "submission_dir": "/abs/path", "seed": 0, "nonce": "..."}

and prints its result as one JSON object framed by two lines that carry the request's nonce::

    --- innovator-result <nonce> ---
    {"valid": true, "metric": 0.71, "metrics": {...}, "message": "..."}
    --- end innovator-result <nonce> ---

Anything else on stdout is ignored, so a noisy grader (or code it runs) cannot corrupt the result,
and code that does not know the nonce cannot forge one. Exit 0 for a valid or an invalid
submission; a non-zero exit or a timeout is a grader failure.

Graders that execute the agent's code use `run_untrusted`, which runs it in its own process
group with a clean environment (no nonce), a timeout and optionally a CPU-time limit, and captures
its output. Where bubblewrap works (see `isolation`) the code also runs in a sandbox that shows
it only the system, the Python installation and its own work directory: not the grader's files,
its scratch directory, its process or the network. The grader may be sandboxed itself; bwrap
nests. In a grader container without bubblewrap (the docker backend) it runs as `nobody`.

Graded computations run with PINNED_NUMERICS in their environment, so that the same submission
gets the same metric on any x86-64 CPU: the harness starts graders with them
(grading.grader_environment), run_untrusted gives them to the agent's code, and a grader that
computes with torch calls `pin_numerics` first, for when it is run by hand.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pwd
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_innovator.sandbox import Sandbox, bwrap_path, python_first

PROTOCOL = 1

# Set to "1" by a backend that runs the grader as root alone in a container of its own (only its
# scratch directory and the Python installation mounted): there, without bubblewrap, the agent's
# code runs as `nobody`, which cannot read the 0700 scratch directory or touch the grader.
ALONE_IN_CONTAINER = "INNOVATOR_GRADER_ALONE_IN_CONTAINER"

# Sets the CPU-time limit, then execs the program. argv: cpu_seconds program args...
CPU_LIMIT = """
import os, resource, sys
seconds = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))
os.execvp(sys.argv[2], sys.argv[2:])
"""


# Without these, torch's libraries and glibc's libm pick their code by CPU, which changes float
# results in the last bit and, over hundreds of training steps, the metric. Each pin selects code
# that every x86-64 CPU runs alike (task_suites/mini/README.md, Calibration).
PINNED_NUMERICS = {
    "ATEN_CPU_CAPABILITY": "default",  # ATen's generic kernels, not its AVX2 or AVX-512 ones
    "MKL_CBWR": "COMPATIBLE",  # MKL's SSE2 branch, the same results on every CPU for a fixed thread count
    "MKL_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "ONEDNN_MAX_CPU_ISA": "SSE41",  # oneDNN's kernels (torch's GELU) for SSE4.1, which every current CPU has
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4",  # libm's exp, cos, pow... without FMA
}


def numerics_environment(env: Mapping[str, str]) -> dict[str, str]:
    """env with PINNED_NUMERICS, which win over env's own values of them."""
    return {**env, **PINNED_NUMERICS}


def pin_numerics() -> None:
    """Restart this process with PINNED_NUMERICS unless it has them already; call it first in a
    grader's main(), before it computes anything (the environment must be there at start-up)."""
    if any(os.environ.get(name) != value for name, value in PINNED_NUMERICS.items()):
        os.execve(sys.executable, sys.orig_argv, numerics_environment(os.environ))


def result_frame(nonce: str) -> tuple[str, str]:
    return f"--- innovator-result {nonce} ---", f"--- end innovator-result {nonce} ---"


@dataclass(frozen=True)
class GradeRequest:
    task_id: str
    submission_dir: Path
    seed: int
    nonce: str


def read_request() -> GradeRequest:
    data = json.loads(sys.stdin.read())
    return GradeRequest(
        task_id=str(data["task_id"]),
        submission_dir=Path(data["submission_dir"]),
        seed=int(data.get("seed", 0)),
        nonce=str(data["nonce"]),
    )


def report(
    request: GradeRequest,
    *,
    valid: bool,
    metric: float | None = None,
    message: str = "",
    metrics: dict[str, float] | None = None,
) -> None:
    """Print the framed result; call once, at the end of grading."""
    if valid and (metric is None or not math.isfinite(metric)):
        raise ValueError(f"a valid result needs a finite metric, got {metric!r}")
    payload: dict[str, Any] = {
        "valid": valid,
        "metric": None if metric is None else float(metric),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "message": message,
    }
    start, end = result_frame(request.nonce)
    sys.stdout.write(f"\n{start}\n{json.dumps(payload)}\n{end}\n")
    sys.stdout.flush()


def invalid(request: GradeRequest, message: str) -> None:
    report(request, valid=False, message=message)


def isolation() -> str:
    """How run_untrusted isolates the agent's code here: "sandbox" (bubblewrap), "unprivileged"
    (as `nobody`, in a grader container; see ALONE_IN_CONTAINER), or "none"."""
    if bwrap_path() is not None:
        return "sandbox"
    return "unprivileged" if _unprivileged_ids() is not None else "none"


def isolation_available() -> bool:
    """Whether the agent's code run by run_untrusted is kept from the grader's files and process."""
    return isolation() != "none"


@functools.cache
def _unprivileged_ids() -> tuple[int, int] | None:
    """(uid, gid) of `nobody` where running as nobody isolates: the grader runs as root, alone in
    a container (nothing else there for nobody to read: its scratch directory is 0700), and
    nobody can run this interpreter."""
    if os.environ.get(ALONE_IN_CONTAINER) != "1" or os.geteuid() != 0:
        return None
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return None
    try:
        probe = subprocess.run(
            [sys.executable, "-I", "-c", "pass"],
            user=nobody.pw_uid,
            group=nobody.pw_gid,
            extra_groups=[],
            capture_output=True,
            check=False,
        )
    except OSError:  # nobody may not even reach the interpreter
        return None
    return (nobody.pw_uid, nobody.pw_gid) if probe.returncode == 0 else None


def run_untrusted(
    argv: list[str],
    *,
    cwd: Path,
    timeout: float,
    input: str | None = None,
    env: dict[str, str] | None = None,
    cpu_seconds: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the agent's code in cwd, sandboxed where possible, killed whole on timeout.

    cwd is the only writable (and the only task-specific readable) directory inside the sandbox;
    put everything the code needs there. Past cpu_seconds of CPU time the program is killed
    (see killed_by_limits). Raises subprocess.TimeoutExpired after killing the group. The
    program's environment is a clean one with env added, and PINNED_NUMERICS over both.
    """
    clean_env = {"PATH": python_first(os.environ.get("PATH")), "LANG": "C.UTF-8", "HOME": str(cwd), **(env or {})}
    command = list(argv)
    if cpu_seconds is not None:
        command = [sys.executable, "-I", "-c", CPU_LIMIT, str(cpu_seconds), *command]
    as_user: dict[str, Any] = {}
    if bwrap_path() is not None:
        cwd = Path(cwd).resolve()
        command = Sandbox(writable=[cwd], chdir=cwd).argv(command)
    elif (ids := _unprivileged_ids()) is not None:
        uid, gid = ids
        for directory, _, names in os.walk(cwd):
            for path in [directory, *(os.path.join(directory, n) for n in names)]:
                os.lchown(path, uid, gid)
        as_user = {"user": uid, "group": gid, "extra_groups": []}
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=numerics_environment(clean_env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **as_user,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left in the background
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def killed_by_limits(proc: subprocess.CompletedProcess[str]) -> bool:
    """Whether run_untrusted's program was killed for CPU time (SIGXCPU, then SIGKILL) or memory."""
    # bwrap's init passes the child's death by a signal on as exit status 128 + signal.
    codes = {signal.SIGXCPU, signal.SIGKILL}
    return -proc.returncode in codes or proc.returncode - 128 in codes


def program_failure(
    argv: list[str],
    *,
    cwd: Path,
    timeout: float,
    cpu_seconds: int,
    activity: str,
    failed: str,
    rerun_hint: str,
    env: dict[str, str] | None = None,
) -> str | None:
    """Run a program that executes the agent's code (run_untrusted); None if it exited 0, else why.

    The reason carries the end of the program's error output only when it ran sandboxed:
    unsandboxed, it could have read the grader's files, so none of its text is passed back and
    `rerun_hint` tells the agent how to see the error itself. `activity` names what the program
    does ("training"), `failed` starts the message for a non-zero exit ("train.py failed ...").
    env is added to the program's environment, as in run_untrusted.
    """
    try:
        proc = run_untrusted(argv, cwd=cwd, timeout=timeout, env=env, cpu_seconds=cpu_seconds)
    except subprocess.TimeoutExpired:
        return f"{activity} did not finish within {timeout:g} seconds of wall-clock time"
    if killed_by_limits(proc):
        limit = f"more than {cpu_seconds} seconds of CPU time (or too much memory)"
        return f"{activity} was stopped: it used {limit}"
    if proc.returncode == 0:
        return None
    failure = f"{failed} (exit status {proc.returncode})"
    if isolation_available():
        return f"{failure}:\n{proc.stderr[-1500:]}"
    return f"{failure}; {rerun_hint}"
