"""Entering network namespaces from the calling thread, and sysctls inside them.

setns(2) on the calling thread only, always undone (try/finally), so a node agent's other
threads never notice. A netlink socket keeps the namespace it was created in, so the backends
create their sockets inside `entered(...)` and use them from anywhere afterwards; /proc/sys/net
shows the namespace of the thread that opens a file, so sysctls are written inside it too.
"""

from __future__ import annotations

import os

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
_libc = None


def netns_path(netns: str) -> str:
    """A name under /run/netns (`ip netns add NAME`) or a path (CNI_NETNS, /proc/PID/ns/net)."""
    return netns if "/" in netns else os.path.join(NETNS_DIR, netns)


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    global _libc
    if _libc is None:
        _libc = _libc_setns()
    call, get_errno = _libc
    if call(fd, CLONE_NEWNET) != 0:
        err = get_errno()
        raise OSError(err, os.strerror(err))


def _libc_setns():
    """libc's setns(2) as ctypes.CDLL(None, use_errno=True).setns calls it, built on _ctypes
    (the C half of ctypes) because importing ctypes costs every plugin run ~2.5 ms."""
    try:
        import _ctypes  # _ctypes, not ctypes: ctypes costs every plugin run ~2.5 ms

        class CInt(_ctypes._SimpleCData):  # ctypes.c_int
            _type_ = "i"

        class LibcFunction(_ctypes.CFuncPtr):  # what CDLL makes for each symbol
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = CInt

        handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)
        return LibcFunction(_ctypes.dlsym(handle, "setns")), _ctypes.get_errno
    except (ImportError, AttributeError, OSError):  # another interpreter's _ctypes: ctypes itself
        import ctypes  # fallback: another interpreter's _ctypes

        return ctypes.CDLL(None, use_errno=True).setns, ctypes.get_errno


def same_netns(a: str, b: str) -> bool:
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def current_is_host() -> bool:
    """Whether this thread may be in the host's own network namespace. When init's namespace
    cannot be read (some sandboxes forbid it), only a namespace that `ip netns` names counts
    as not the host's: refusing by mistake is safe, running in the host's namespace is not."""
    try:
        return same_netns("/proc/thread-self/ns/net", "/proc/1/ns/net")
    except OSError:
        pass
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return True
    for name in names:
        try:
            if same_netns("/proc/thread-self/ns/net", f"/run/netns/{name}"):
                return False
        except OSError:
            continue
    return True


class entered:
    """`with entered(netns):` runs the body in `netns` (None: stay where we are) and comes back
    to this thread's namespace however the body ends. A class, not @contextmanager: contextlib
    costs a plugin run ~0.4 ms."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.fds: tuple[int, int] | None = None  # (target, home) while inside

    def __enter__(self) -> None:
        if self.netns is None:
            return
        target = os.open(netns_path(self.netns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(target)
            raise
        try:
            _setns(target)
        except BaseException:
            os.close(target)
            os.close(home)
            raise
        self.fds = (target, home)

    def __exit__(self, *exc_info: object) -> None:
        if self.fds is None:
            return
        target, home = self.fds
        self.fds = None
        try:
            _setns(home)
        finally:
            os.close(target)
            os.close(home)


def write_sysctl(key: str, value: str) -> bool:
    """`key` slash-separated (net/ipv4/conf/eth0/arp_notify: interface names may hold dots).
    Best effort, like the reference (`_, _ = sysctl.Sysctl(...)`): False if it could not."""
    try:
        with open("/proc/sys/" + key, "wb") as fh:  # bytes: no text layer, no locale's codec
            fh.write(value.encode())
        return True
    except OSError:
        return False
