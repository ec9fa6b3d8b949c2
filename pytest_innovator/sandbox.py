"""Bubblewrap sandboxes: what the agent's commands (and graders that run its code) can see.

A sandboxed process sees only the system (/usr, /etc, /sys and the usual symlinks), the Python
installation the harness runs on (its prefixes, site-packages, and the directories editable
installs point to), read-only; a fresh /tmp; and the paths given as writable or read-only. Home
directories, checkouts (with their .git objects) and every other copy of a task's hidden files
are not there at all. Within what is visible, `hidden` paths are covered by empty tmpfs mounts;
bwrap applies mounts in order, so a path can be re-exposed inside a hidden directory. It has its
own PID, IPC and UTS namespaces and no network unless allowed; `--die-with-parent` ends it with
its owner, and everything inside dies with the namespace's init.
"""

from __future__ import annotations

import functools
import shutil
import site
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_DIRS = ("/usr", "/etc", "/sys")
ROOT_SYMLINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@functools.cache
def bwrap_path() -> str | None:
    """The bwrap binary if it exists and can create a sandbox here, else None."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--unshare-pid", "--", "true"], capture_output=True)
    return path if probe.returncode == 0 else None


def python_first(path: str | None) -> str:
    """`path` (a PATH value; None for the default) with this interpreter's directory first, so
    that `python3` in a command is the harness's own Python, whatever else is on PATH."""
    return f"{Path(sys.executable).parent}:{path or '/usr/bin:/bin'}"


def _pth_directories(site_dir: Path) -> list[Path]:
    """Directories that .pth files in site_dir add to sys.path (editable installs)."""
    found = []
    for pth in site_dir.glob("*.pth"):
        for line in pth.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "import ")) and Path(line).is_dir():
                found.append(Path(line))
    return found


@functools.cache
def python_paths() -> tuple[Path, ...]:
    """Everything the harness's Python needs to run inside a sandbox, and nothing around it."""
    import pytest_innovator

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.executable).resolve().parent}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(Path(sysconfig.get_paths()[key]))
    site_dirs = [Path(p) for p in (*site.getsitepackages(), site.getusersitepackages()) if Path(p).is_dir()]
    for site_dir in site_dirs:
        paths.add(site_dir)
        paths.update(_pth_directories(site_dir))
    paths.add(Path(pytest_innovator.__file__).resolve().parent)
    existing = sorted(p.resolve() for p in paths if p.exists())
    # Keep only the outermost of nested paths.
    return tuple(p for p in existing if not any(q != p and q in p.parents for q in existing))


def _system_args() -> list[str]:
    args = []
    for path in SYSTEM_DIRS:
        if Path(path).is_dir():
            args += ["--ro-bind", path, path]
    for path in ROOT_SYMLINKS:
        link = Path(path)
        if link.is_symlink():
            args += ["--symlink", str(link.readlink()), path]
        elif link.is_dir():
            args += ["--ro-bind", path, path]
    for path in python_paths():
        if not any(Path(d) in (path, *path.parents) for d in SYSTEM_DIRS):
            args += ["--ro-bind", str(path), str(path)]
    return args


@dataclass
class Sandbox:
    writable: Sequence[Path] = ()
    readonly: Sequence[Path] = ()
    hidden: Sequence[Path] = ()
    network: bool = False
    chdir: Path | None = None
    extra_readonly: list[Path] = field(default_factory=list)  # added later, e.g. the oracle's solution
    readonly_inside: Sequence[Path] = ()  # bound read-only over paths inside the writable ones
    devices: Sequence[Path] = ()  # host device nodes to pass through, e.g. the leased GPUs'
    places: dict[Path, Path] = field(default_factory=dict)  # a bound host directory -> where it is seen

    def inside(self, path: Path) -> Path:
        """Where commands see a host path that is bound (at the place `places` gives it)."""
        for host, place in self.places.items():
            if path == host or host in path.parents:
                return place / path.relative_to(host)
        return path

    def argv(self, command: Sequence[str]) -> list[str]:
        bwrap = bwrap_path()
        if bwrap is None:
            raise RuntimeError(
                "bubblewrap (bwrap) is not usable here; install it (apt-get install bubblewrap) "
                "or choose --innovator-backend local"
            )
        args = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not self.network:
            args.append("--unshare-net")
        args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *_system_args()]
        for path in self.hidden:
            if Path(path).is_dir():
                args += ["--tmpfs", str(path)]
            elif Path(path).exists():
                args += ["--ro-bind", "/dev/null", str(path)]
        for path in [*self.readonly, *self.extra_readonly]:
            args += ["--ro-bind", str(path), str(self.inside(Path(path)))]
        for path in self.writable:
            args += ["--bind", str(path), str(self.inside(Path(path)))]
        for path in self.readonly_inside:
            args += ["--ro-bind", str(path), str(self.inside(Path(path)))]
        for node in self.devices:  # last: a later bind of a directory above it would hide it
            args += ["--dev-bind", str(node), str(node)]
        if self.chdir is not None:
            args += ["--chdir", str(self.chdir)]
        return [*args, "--", *command]
