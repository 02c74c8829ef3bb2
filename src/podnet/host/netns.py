"""Named network namespaces on the host: create, enter, list, find their processes, remove.

A named namespace is a bind mount of a namespace onto a file in /run/netns, as iproute2 does
it (`ip netns add`), so `ip netns exec` and every other tool see podnet's namespaces.

Entering a namespace happens in a short-lived thread: setns(2) and unshare(2) with
CLONE_NEWNET change only the calling thread, so the main thread of the process never leaves
its own namespace, and a failure half-way cannot leave it stranded in a cluster namespace —
or, worse, leave later calls acting on the host. Sockets opened in that thread stay bound
to the namespace after the thread is gone, which is how netlink sockets get into a namespace
without forking a helper process. Every entry checks that it did arrive in the namespace it
asked for and that it is not the namespace of the process itself (the sandbox rule).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from podnet.host.layout import NETNS_DIR

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_BIND = 0x1000
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = None
_lock = threading.Lock()
_shared_dirs: set[str] = set()


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return _libc


def _check(result: int, what: str, path: str | Path = "") -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}", str(path))


def netns_path(name: str, netns_dir: Path = NETNS_DIR) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid network namespace name {name!r}")
    return netns_dir / name


def list_netns(netns_dir: Path = NETNS_DIR) -> list[str]:
    try:
        return sorted(os.listdir(netns_dir))
    except FileNotFoundError:
        return []


def _identity(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def netns_identity(name: str, netns_dir: Path = NETNS_DIR) -> tuple[int, int] | None:
    """(device, inode) of the namespace mounted at the name, None when it is not mounted.

    An unmounted file (a crash between creating the file and mounting onto it) is on the
    file system's device, not nsfs, so it never matches a process's /proc/PID/ns/net."""
    try:
        identity = _identity(netns_path(name, netns_dir))
    except OSError:
        return None
    nsfs = _nsfs_device()
    return identity if nsfs is None or identity[0] == nsfs else None


def _nsfs_device() -> int | None:
    try:
        return os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return None


def own_netns_identity() -> tuple[int, int]:
    """The namespace of the process (its main thread): the host's, for podnet's tools."""
    return _identity(f"/proc/{os.getpid()}/ns/net")


def run_in_netns(name: str, fn: Callable[[], T], netns_dir: Path = NETNS_DIR) -> T:
    """fn() in a thread that has entered the named namespace; its result or its exception."""
    path = netns_path(name, netns_dir)
    box: dict[str, object] = {}

    def enter_and_run() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.fstat(fd)
                if (target.st_dev, target.st_ino) == own_netns_identity():
                    raise RuntimeError(f"refusing to enter {name}: it is the host's own namespace")
                _check(_c().setns(fd, CLONE_NEWNET), "setns", path)
            finally:
                os.close(fd)
            here = _identity("/proc/thread-self/ns/net")
            if here != (target.st_dev, target.st_ino):
                raise RuntimeError(f"setns into {name} did not take effect")
            box["result"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=enter_and_run, name=f"netns:{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def socket_in_netns(name: str, family: int, kind: int, proto: int = 0,
                    netns_dir: Path = NETNS_DIR) -> socket.socket:
    """A socket that lives in the named namespace (it keeps it even when used from here)."""
    return run_in_netns(name, lambda: socket.socket(family, kind, proto), netns_dir)


def _make_shared(netns_dir: Path) -> None:
    """Make the netns directory a shared mount point, as iproute2 does, so that a namespace
    mounted or unmounted here is seen in the mount namespaces of `ip netns exec`."""
    key = str(netns_dir)
    if key in _shared_dirs:
        return
    netns_dir.mkdir(parents=True, exist_ok=True)
    libc = _c()
    target = key.encode()
    if libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None) != 0:
        _check(libc.mount(target, target, b"none", MS_BIND | MS_REC, None), "bind-mount", netns_dir)
        _check(libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None), "make shared", netns_dir)
    _shared_dirs.add(key)


def create_netns(name: str, netns_dir: Path = NETNS_DIR) -> None:
    """A new, empty namespace mounted at the name. FileExistsError when the name is taken."""
    path = netns_path(name, netns_dir)
    with _lock:
        _make_shared(netns_dir)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))

    def unshare_and_mount() -> None:
        _check(_c().unshare(CLONE_NEWNET), "unshare", path)
        # /proc/self is the thread group leader, which stays in its namespace
        source = "/proc/thread-self/ns/net".encode()
        _check(_c().mount(source, str(path).encode(), b"none", MS_BIND, None), "mount", path)

    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            unshare_and_mount()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"netns-create:{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        try:
            path.unlink()
        except OSError:
            pass
        raise box["error"]


def delete_netns(name: str, netns_dir: Path = NETNS_DIR) -> bool:
    """Unmount and remove the name; True if there was something. The namespace itself goes
    away with its last user (processes and open sockets in it keep it alive, unnamed)."""
    path = netns_path(name, netns_dir)
    if not os.path.lexists(path):
        return False
    mounted = netns_identity(name, netns_dir) is not None  # else a half-made name: just a file
    if mounted and _c().umount2(str(path).encode(), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (half-made)
            raise OSError(code, f"umount: {os.strerror(code)}", str(path))
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    return True


# ---- sysctls ----------------------------------------------------------------------------------


def sysctl_path(key: str) -> str:
    """net.ipv4.conf.all.rp_filter → /proc/sys/net/ipv4/conf/all/rp_filter (sysctl(8) rules:
    a '/' in the dotted key stands for a '.' in the path, as in net.ipv4.conf.flannel/1.*)."""
    return "/proc/sys/" + key.translate(str.maketrans("./", "/."))


def read_sysctls(name: str, keys: Iterable[str], netns_dir: Path = NETNS_DIR) -> dict[str, str]:
    """The keys that exist in the namespace, with their values."""
    wanted = list(keys)

    def read() -> dict[str, str]:
        values = {}
        for key in wanted:
            try:
                with open(sysctl_path(key)) as f:
                    values[key] = f.read().strip()
            except FileNotFoundError:
                continue
        return values

    return run_in_netns(name, read, netns_dir) if wanted else {}


def write_sysctls(name: str, values: Mapping[str, str], netns_dir: Path = NETNS_DIR) -> None:
    """Per-namespace sysctls only: /proc/sys/net resolves to the namespace of the thread
    that opens it, and that thread is inside the cluster's namespace."""
    for key in values:
        if not key.startswith("net."):
            raise ValueError(f"{key}: only per-namespace net.* sysctls may be set")

    def write() -> None:
        for key, value in values.items():
            with open(sysctl_path(key), "w") as f:
                f.write(str(value))

    if values:
        run_in_netns(name, write, netns_dir)


# ---- processes --------------------------------------------------------------------------------


def pids_in_netns(names: Iterable[str], netns_dir: Path = NETNS_DIR) -> dict[str, list[int]]:
    """Processes whose network namespace is one of the named ones, found by matching
    /proc/PID/ns/net against the mounted namespace's (device, inode)."""
    wanted: dict[tuple[int, int], str] = {}
    for name in names:
        identity = netns_identity(name, netns_dir)
        if identity is not None:
            wanted[identity] = name
    found: dict[str, list[int]] = {}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            identity = _identity(f"/proc/{entry}/ns/net")
        except OSError:  # gone, or a kernel thread we may not look at
            continue
        if identity in wanted:
            found.setdefault(wanted[identity], []).append(int(entry))
    return {name: sorted(pids) for name, pids in found.items()}


def kill_pids(pids: Iterable[int], grace: float = 0.5) -> list[int]:
    """SIGTERM, then SIGKILL what is left after `grace` seconds; the pids that were signalled.

    Children of this process are reaped, so they do not linger as zombies."""
    pids = sorted(set(pids) - {os.getpid()})
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = list(signalled)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if _alive(pid)]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.02)
    return signalled


def _alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


# ---- mounts -----------------------------------------------------------------------------------


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below the directory, deepest first (so they can be unmounted)."""
    prefix = str(directory).rstrip("/")
    points = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    points.append(point)
    except OSError:
        return []
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def unmount(point: str) -> None:
    if _c().umount2(point.encode(), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, f"umount: {os.strerror(code)}", point)
