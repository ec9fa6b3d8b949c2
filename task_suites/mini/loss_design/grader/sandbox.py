"""Runs the submission's code (a Python program in a work directory) out of the grader's reach.

When the grader runs as root and the host has `unshare` and `mount`, the program runs as the
unprivileged user `nobody`, in a private mount namespace where this interpreter's installation is
bind-mounted inside the work directory (so `nobody` can import torch even when the installation
lives under a directory it cannot enter, such as /root). As `nobody` it cannot read the grader's
scratch directory (mode 0700, owned by root) nor the grader's process. Otherwise it runs as the
grader's own user. Either way it goes through grader_kit.run_untrusted (its own process group, a
clean environment without the nonce, killed whole on the wall-clock timeout) and under a limit
on CPU time, which, unlike wall-clock time, does not depend on how busy the machine is.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from pytest_innovator.grader_kit import run_untrusted

# Sets the CPU limit and execs the interpreter. argv: cpu_seconds program-args...
LIMIT = """
import os, resource, sys
cpu_seconds = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
os.execv(sys.executable, [sys.executable, "-E", "-s", *sys.argv[2:]])
"""

# Runs as root inside the new mount namespace: mount the interpreter's installation, set the CPU
# limit, drop to nobody, exec the interpreter from the mount. argv: cpu_seconds workdir uid gid
# program-args...
ENTER = """
import os, resource, subprocess, sys, tempfile
cpu_seconds, workdir, uid, gid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
prefix = tempfile.mkdtemp(prefix=".python-", dir=workdir)
subprocess.run(["mount", "--bind", "-o", "ro", sys.base_prefix, prefix], check=True)
interpreter = os.path.relpath(os.path.realpath(sys.executable), sys.base_prefix)
executable = os.path.join(prefix, interpreter)
env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir,
       "LD_LIBRARY_PATH": os.path.join(prefix, "lib")}
resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
os.setgroups([]); os.setgid(gid); os.setuid(uid)
os.execve(executable, [executable, "-E", "-s", *sys.argv[5:]], env)
"""


def _isolating_prefix(workdir: Path, cpu_seconds: int, probe: str) -> list[str]:
    """An argv prefix that runs `python args...` as nobody, or [] when this host cannot."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("mount") is None:
        return []
    if sys.prefix != sys.base_prefix:  # a virtual environment: not all of it is under base_prefix
        return []
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return []
    unshare = ["unshare", "--mount", "--propagation", "private"]
    ids = [str(nobody.pw_uid), str(nobody.pw_gid)]
    prefix = [
        *unshare,
        sys.executable,
        "-E",
        "-s",
        "-c",
        ENTER,
        str(cpu_seconds),
        str(workdir),
        *ids,
    ]
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    try:
        check = run_untrusted([*prefix, "-c", probe], cwd=workdir, timeout=60)
    except subprocess.TimeoutExpired:
        return []
    return prefix if check.returncode == 0 else []


def run_python(
    args: list[str], *, workdir: Path, timeout: float, cpu_seconds: int, probe: str
) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Run `python3 -E -s args...` in workdir: (the finished process, whether it ran as nobody).

    `probe` is Python source that must succeed in the isolated interpreter (say, finding the
    libraries the program needs) for isolation to be used. Raises subprocess.TimeoutExpired
    after `timeout` seconds of wall-clock time; past `cpu_seconds` of CPU time the program is
    killed (see killed_by_limits).
    """
    isolating = _isolating_prefix(workdir, cpu_seconds, probe)
    prefix = isolating or [sys.executable, "-E", "-s", "-c", LIMIT, str(cpu_seconds)]
    return run_untrusted([*prefix, *args], cwd=workdir, timeout=timeout), bool(isolating)


def killed_by_limits(proc: subprocess.CompletedProcess[str]) -> bool:
    """Whether the program was killed for its CPU time (SIGXCPU, then SIGKILL) or memory."""
    return proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
