"""podnet exec / logs / apply / delete: commands to a running cluster, through its supervisor's
control socket. They load nothing of the data plane (`up` and `down`, in podnet.cli.lifecycle, do).

`apply` and `delete` send the files' texts as read, and the supervisor admits them (already
loaded, its validators answer at once) with the files' names, so a problem is reported at the
user's file and line as before — and the command starts without loading the API schemas (about
30 ms of an apply whose goal is 200 ms, start to enforced)."""

from __future__ import annotations

import argparse
import os
import sys

from podnet.api.loader import read_files
from podnet.errors import InvalidInput, PodnetError, UsageError
from podnet.host.control import pick_cluster, request


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PodnetError(f"{what} builds Linux network namespaces and needs root. Without root, the same cluster "
                          "can be computed offline: podnet get pods -o wide -f FILE (and trace, dig, matrix)")


# ---- exec, logs ---------------------------------------------------------------------------------

EXEC_EXAMPLES = """examples:
  sudo podnet exec shop/frontend-57d4ddf97c-g6r5s -- cat /etc/resolv.conf
  sudo podnet exec frontend-57d4ddf97c-g6r5s -n shop -- wget -qO- http://backend/hostname
  sudo podnet exec node/node1 -- ip route
  sudo podnet exec node/node1 -- bridge fdb show dev flannel.1
  sudo podnet exec external -- curl -s http://192.168.1.11:30080/
"""


def add_exec(sub) -> None:
    p = sub.add_parser("exec", help="run a command in a pod, a node or the external client (root)",
                       epilog=EXEC_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="POD|node/NAME|external")
    p.add_argument("cmd", nargs="*", metavar="-- CMD", help="the command, after --")
    p.add_argument("-n", "--namespace")
    p.add_argument("-c", "--container")
    p.add_argument("--name")


def _target(target: str, namespace: str | None) -> str:
    if target == "external" or target.startswith("node/") or "/" in target:
        return target
    return f"{namespace or 'default'}/{target}"


def run_exec(args) -> int:
    require_root("podnet exec")
    command = list(args.cmd)
    if not command:
        raise UsageError("podnet exec TARGET -- CMD...: give the command after --")
    layout = pick_cluster(args.name)
    argv = request(layout, "exec", target=_target(args.target, args.namespace), container=args.container)["argv"]
    os.execvp(argv[0], argv + command)
    return 0  # not reached


LOGS_EXAMPLES = """examples:
  sudo podnet logs shop/frontend-57d4ddf97c-g6r5s
  sudo podnet logs redis-0 -n data -c redis
"""


def add_logs(sub) -> None:
    p = sub.add_parser("logs", help="a container's output (root)", epilog=LOGS_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="POD")
    p.add_argument("-n", "--namespace")
    p.add_argument("-c", "--container")
    p.add_argument("--name")


def run_logs(args) -> int:
    require_root("podnet logs")
    layout = pick_cluster(args.name)
    sys.stdout.write(request(layout, "logs", target=_target(args.target, args.namespace), container=args.container)["text"])
    return 0


# ---- apply, delete ------------------------------------------------------------------------------

CHANGE_EXAMPLES = """examples:
  sudo podnet apply -f more-pods.yaml
  sudo podnet delete -f more-pods.yaml
"""
DELETE_EXAMPLES = """examples:
  sudo podnet delete -f more-pods.yaml                   # each pod terminates with its own grace period
  sudo podnet delete -f more-pods.yaml --grace-period=5  # ... with 5 s (--now: 1 s)
  sudo podnet delete -f more-pods.yaml --force --grace-period=0   # gone at once, no Terminating
"""


def add_change(sub, verb: str) -> None:
    delete = verb == "delete"
    p = sub.add_parser(verb, help=f"{verb} objects in a running cluster (root)",
                       epilog=DELETE_EXAMPLES if delete else CHANGE_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--filename", action="append", metavar="FILE|DIR|-", required=True)
    p.add_argument("--name")
    if delete:  # kubectl delete's
        p.add_argument("--grace-period", type=int, default=-1, metavar="SECONDS",
                       help="seconds each pod has to terminate; -1 (default): the pod's "
                            "terminationGracePeriodSeconds; 0 only with --force")
        p.add_argument("--now", action="store_true", help="the pods terminate at once (grace period 1)")
        p.add_argument("--force", action="store_true",
                       help="with --grace-period=0: the pods go at once, without terminating first")


def requested_grace_period(args) -> int | None:
    """kubectl delete's rules for its flags: --now is grace period 1 (not together with
    --grace-period); 0 without --force becomes 1, so nothing is force-deleted by accident;
    --force without a grace period is 0. None: each pod's own."""
    grace = args.grace_period
    if args.now:
        if grace != -1:
            raise UsageError("--now and --grace-period cannot be specified together")
        grace = 1
    if grace == 0 and not args.force:
        grace = 1
    if args.force and grace < 0:
        grace = 0
    return None if grace < 0 else grace


def run_change(args, delete: bool) -> int:
    require_root(f"podnet {'delete' if delete else 'apply'}")
    grace = requested_grace_period(args) if delete else None
    files = read_files(args.filename)
    if files.problems:
        raise InvalidInput(files.problems)
    layout = pick_cluster(args.name)
    options = {"gracePeriod": grace} if grace is not None else {}
    if grace == 0:  # kubectl's words for a forced deletion
        print("Warning: Immediate deletion does not wait for confirmation that the running resource has been "
              "terminated. The resource may continue to run on the cluster indefinitely.", file=sys.stderr)
    reply = request(layout, "delete" if delete else "apply", files=files.texts, **options)  # refused whole if invalid
    for warning in reply.get("warnings", []):
        print(warning, file=sys.stderr)
    for line in reply["lines"]:
        print(line)
    return 1 if any(line.startswith("Error") for line in reply["lines"]) else 0
