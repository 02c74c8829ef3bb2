"""`podnet-cni`, the executable: CNI_* environment and config on stdin in, result or error JSON
on stdout, exit status 0 or 1 (errors go to stdout as the reference plugins print them).

Run it inside the node's namespace: `ip netns exec <node-netns> podnet-cni`. Imports are kept
to the standard library and this package (no pyroute2), because a plugin process lives for
milliseconds and its start-up is most of its cost.
"""

from __future__ import annotations

import os
import sys

from podnet.cni.spec import (
    CURRENT_VERSION, INTERNAL, IO_FAILURE, CniError, dumps, invocation_from_env, require_version, version_dict,
)


def run(environ, stdin: bytes, *, netlink=None, store=None) -> tuple[int, str]:
    """One invocation: (exit status, text for stdout). Never raises. `netlink`/`store`: fakes
    for tests (default: the kernel, seen from the current namespace, and host-local's files)."""
    version = CURRENT_VERSION
    try:
        inv = invocation_from_env(environ)
        if inv.command == "VERSION":
            from podnet.cni import jsonio  # VERSION needs nothing else

            try:
                requested = jsonio.loads(stdin or b"{}").get("cniVersion")
            except (ValueError, AttributeError):
                requested = None
            return 0, dumps(version_dict(requested))
        from podnet.cni import bridge, config  # VERSION answers without loading the plugin

        conf = config.parse(stdin, inv.args)
        version = conf.cni_version
        if inv.command == "ADD":
            result = bridge.add(conf, inv.container_id, inv.netns, inv.ifname, node_netns=None, args=inv.args,
                                netlink=netlink, store=store)
            return 0, dumps(result.to_dict(conf.cni_version))
        if inv.command == "DEL":
            bridge.delete(conf, inv.container_id, inv.netns, inv.ifname, node_netns=None, netlink=netlink, store=store)
        elif inv.command == "CHECK":
            require_version(conf.cni_version, "0.4.0", "CHECK")
            bridge.check(conf, inv.container_id, inv.netns, inv.ifname, node_netns=None, netlink=netlink, store=store)
        elif inv.command == "GC":
            require_version(conf.cni_version, "1.1.0", "GC")
            bridge.gc(conf, store=store)
        elif inv.command == "STATUS":
            require_version(conf.cni_version, "1.1.0", "STATUS")
            bridge.status(conf, node_netns=None, netlink=netlink, store=store)
        return 0, ""
    except CniError as exc:
        return 1, dumps(exc.to_dict(version))
    except Exception as exc:  # noqa: BLE001 - the runtime must always get error JSON
        return 1, dumps(CniError(INTERNAL, f"{type(exc).__name__}: {exc}").to_dict(version))


def main() -> int:
    try:
        stdin = b"" if os.environ.get("CNI_COMMAND") == "VERSION" and sys.stdin.isatty() else sys.stdin.buffer.read()
    except OSError as exc:
        sys.stdout.write(dumps(CniError(IO_FAILURE, f"error reading from stdin: {exc}").to_dict()) + "\n")
        sys.stdout.flush()
        return 1
    if not os.environ.get("CNI_COMMAND"):
        sys.stderr.write("CNI podnet-cni plugin (bridge + host-local)\nCNI protocol versions supported: "
                         "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n")
    status, out = run(os.environ, stdin)
    if out:
        sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return status


def main_and_exit() -> None:
    """The installed launcher's entry: main(), then the process ends at once. Everything is
    written, flushed and closed by then, so the interpreter's teardown (freeing every module,
    about 1.5 ms of a run) is skipped."""
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
