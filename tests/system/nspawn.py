"""Debian 12 trees for system tests: a cached debootstrap, chroot installs and a systemd-nspawn boot."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TypeVar

CACHE_ROOT = Path(os.environ.get("EDGE_AGENT_CI_CACHE", "/var/cache/edge-agent-ci"))
MIRROR = os.environ.get("EDGE_AGENT_CI_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
# Enough to boot with systemd; the package's own Depends are added so installing it needs no network.
BOOT_PACKAGES = ("systemd", "systemd-sysv", "dbus")
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
T = TypeVar("T")


class SystemTestError(AssertionError):
    """A step of a system test failed; the message carries the command's output."""


def run(
    cmd: Sequence[str], timeout: float = 600, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a host command, capturing text output; a failure raises with stdout and stderr."""
    proc = subprocess.run(list(cmd), check=False, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise SystemTestError(
            f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    """Poll probe until it returns something truthy, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemTestError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def deb_depends(deb: Path) -> list[str]:
    """Package names in the .deb's Depends and Recommends (version constraints dropped)."""
    names: list[str] = []
    for field in ("Depends", "Recommends"):
        value = run(["dpkg-deb", "--field", str(deb), field]).stdout.strip()
        names += [alt.split()[0] for alt in value.split(",") if alt.strip()]
    return names


def base_tree(packages: Sequence[str]) -> Path:
    """A Debian 12 minbase tree with packages installed, cached per day and package list."""
    wanted = sorted(set(BOOT_PACKAGES) | set(packages))
    key = hashlib.sha256(f"{SUITE} {MIRROR} {' '.join(wanted)}".encode()).hexdigest()[:12]
    name = f"{SUITE}-minbase-{date.today():%Y%m%d}-{key}"
    tree = CACHE_ROOT / name
    if (tree / "etc/os-release").is_file():
        return tree
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    for old in CACHE_ROOT.glob(f"{SUITE}-minbase-*"):
        shutil.rmtree(old, ignore_errors=True)
    partial = CACHE_ROOT / f".{name}.{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(wanted)}", SUITE, str(partial), MIRROR],
        timeout=1200,
    )
    # Units for a real box, not a container: they would only fail or wait here.
    run(
        [
            "chroot",
            str(partial),
            "systemctl",
            "mask",
            "--quiet",
            "apt-daily.timer",
            "apt-daily-upgrade.timer",
            "e2scrub_all.timer",
            "systemd-networkd-wait-online.service",
        ]
    )
    partial.rename(tree)
    return tree


def copy_tree(src: Path, dst: Path) -> Path:
    """A private copy of a cached tree (hard links would share inodes with the cache)."""
    run(["cp", "-a", "--reflink=auto", str(src), str(dst)], timeout=600)
    return dst


@contextlib.contextmanager
def mounted_proc(tree: Path) -> Iterator[None]:
    """/proc inside a chroot (OpenVINO and dpkg maintainer scripts expect it)."""
    run(["mount", "-t", "proc", "proc", str(tree / "proc")])
    try:
        yield
    finally:
        run(["umount", "-l", str(tree / "proc")], check=False)


def chroot(
    tree: Path, *cmd: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command in the tree (not booted): what an image build does."""
    env = {"PATH": INSIDE_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    return run(["chroot", str(tree), *cmd], timeout=timeout, check=check, env=env)


@contextlib.contextmanager
def network_namespace(name: str, address: str) -> Iterator[str]:
    """A network namespace with loopback and a LAN-like interface holding address (a veth pair, both ends
    inside: not every kernel has the dummy driver)."""
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        run(["ip", "-n", name, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"])
        run(["ip", "-n", name, "link", "set", "lan1", "up"])
        run(["ip", "-n", name, "link", "set", "lan0", "up"])
        run(["ip", "-n", name, "addr", "add", address, "dev", "lan0"])
        yield f"/run/netns/{name}"
    finally:
        run(["ip", "netns", "delete", name], check=False)


class Container:
    """A tree booted with real systemd in systemd-nspawn; commands run inside through nsenter."""

    def __init__(self, tree: Path, log: Path, netns_path: str) -> None:
        self.tree = tree
        self.log = log
        self.netns_path = netns_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    def boot(self, timeout: float = 120) -> None:
        """Start the container (nspawn needs a pty here, hence script(1)) and wait for boot to finish."""
        nspawn = (
            f"systemd-nspawn -D {self.tree} -b --register=no --keep-unit --console=interactive -q "
            f"--network-namespace-path={self.netns_path}"
        )
        self.proc = subprocess.Popen(
            ["script", "-qfec", nspawn, str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid1 = wait_for("the container's systemd", self._find_pid1, timeout=30)
        # systemctl cannot connect until PID 1 has set up its private bus socket: retry until it answers.
        answer = wait_for("systemd to answer", self._boot_state, timeout=timeout)
        if answer not in ("running", "degraded"):
            raise SystemTestError(f"boot ended in state {answer!r}; console log in {self.log}")

    def _boot_state(self) -> str | None:
        out = self.run("systemctl", "is-system-running", "--wait", timeout=120, check=False)
        return out.stdout.strip() or None

    def _find_pid1(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            raise SystemTestError(f"systemd-nspawn exited early; console log in {self.log}")
        for pid in _descendants(self.proc.pid):
            if _comm(pid) == "systemd":
                return pid
        return None

    def run(self, *cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the booted container, as root, in all of its namespaces."""
        enter = [
            "nsenter",
            "-t",
            str(self.pid1),
            "-a",
            "-r",
            "-w",
            "--",
            "env",
            "-i",
            f"PATH={INSIDE_PATH}",
            "LANG=C.UTF-8",
            "DEBIAN_FRONTEND=noninteractive",
        ]
        return run(enter + list(cmd), timeout=timeout, check=check)

    def sh(self, script: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell snippet inside the container."""
        return self.run("sh", "-c", script, timeout=timeout, check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """systemctl show properties of a unit."""
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def poweroff(self, timeout: float = 60) -> None:
        """Shut the container down cleanly; kill it if it does not stop in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.run("systemctl", "poweroff", "--no-block", check=False)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
