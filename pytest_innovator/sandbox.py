"""Bubblewrap sandboxes: what the agent's commands (and graders that run its code) can see.

A sandboxed process sees the host filesystem read-only, a fresh /tmp, its own PID, IPC and UTS
namespaces, no network unless allowed, and none of the hidden paths (each is covered by an empty
tmpfs). Writable and read-only paths are then bound back in; bwrap applies mounts in order, so a
path can be re-exposed inside a hidden directory. `--die-with-parent` ends the sandbox with its
owner, and everything inside dies with the namespace's init.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@functools.cache
def bwrap_path() -> str | None:
    """The bwrap binary if it exists and can create a sandbox here, else None."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--unshare-pid", "--", "true"], capture_output=True)
    return path if probe.returncode == 0 else None


@dataclass
class Sandbox:
    writable: Sequence[Path] = ()
    readonly: Sequence[Path] = ()
    hidden: Sequence[Path] = ()
    network: bool = False
    chdir: Path | None = None
    extra_readonly: list[Path] = field(default_factory=list)  # added later, e.g. the oracle's solution

    def argv(self, command: Sequence[str]) -> list[str]:
        bwrap = bwrap_path()
        if bwrap is None:
            raise RuntimeError("bubblewrap (bwrap) is not usable here; install it (apt-get install bubblewrap) "
                               "or choose --innovator-backend local")
        args = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not self.network:
            args.append("--unshare-net")
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for path in self.hidden:
            if Path(path).is_dir():
                args += ["--tmpfs", str(path)]
            elif Path(path).exists():
                args += ["--ro-bind", "/dev/null", str(path)]
        for path in [*self.readonly, *self.extra_readonly]:
            args += ["--ro-bind", str(path), str(path)]
        for path in self.writable:
            args += ["--bind", str(path), str(path)]
        if self.chdir is not None:
            args += ["--chdir", str(self.chdir)]
        return [*args, "--", *command]
