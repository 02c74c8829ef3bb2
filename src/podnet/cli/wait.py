"""podnet wait: kubectl wait on a running cluster.

The objects are chosen once, from the first reading, as kubectl's resource builder chooses
them (`pod/web`, `pod web db`, `pods -l app=web`, `pods --all`; -n or -A); then every reading
of the supervisor's long poll (podnet.cli.watching) is judged against the goal (podnet.cli
.waitfor) until each object has met it or the shared --timeout has passed. Objects are judged
in order and each prints `KIND/NAME condition met` once it has, as kubectl's visitor does;
the failures come last, one `error: …` line each (kubectl's aggregate), exit code 1:
`timed out waiting for the condition on pods/web`, `condition not met for pods/web`
(--timeout=0 looks once), `no matching resources found`, or the object's NotFound when it
goes away while its condition is awaited. --for=delete of objects that are not there
succeeds at once, silently. A supervisor being restarted meanwhile does not end the wait: it
asks again until the supervisor answers or the timeout passes (watching.reading_across_restarts).
"""

from __future__ import annotations

import argparse
import sys
import time

from podnet.agnhost.golang import GoError, parse_duration
from podnet.api.kinds import BY_KIND
from podnet.api.objects import KubeObject
from podnet.cli import watching
from podnet.cli.get import parse_kinds, qualified, wanted
from podnet.cli.load import following
from podnet.cli.waitfor import Create, Delete, Goal, WaitError, parse_for
from podnet.controlplane import Cluster

WEEK = 168 * 3600.0  # what a negative --timeout means
NO_RESOURCES = """error: You must provide one or more resources by argument or filename.
Example resource specifications include:
   '-f rsrc.yaml'
   '--filename=rsrc.json'
   '<resource> <name>'
   '<resource>'"""

EXAMPLES = """examples:
  # until every pod labelled app=web is Ready, at most 60 s
  podnet wait --for=condition=Ready pod -l app=web --timeout=60s

  # one pod's phase, by JSONPath
  podnet wait --for=jsonpath='{.status.phase}'=Running pod/web -n shop

  # until a pod is gone (after podnet delete)
  podnet wait --for=delete pod/web --timeout=60s

  # a LoadBalancer address assigned
  podnet wait --for=jsonpath='{.status.loadBalancer.ingress}' svc/shop-public -n shop
"""


def add_parser(sub) -> None:
    p = sub.add_parser("wait", help="wait for a condition on objects of a running cluster (kubectl wait)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("resources", nargs="*", metavar="TYPE[/NAME]|TYPE NAME…")
    p.add_argument("--for", dest="for_", metavar="create|delete|condition=NAME[=VALUE]|jsonpath='{EXPR}'[=VALUE]",
                   help="the goal; condition values are compared case-insensitively, the default value is true")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web")
    p.add_argument("--all", action="store_true", help="every object of the types in the namespace")
    p.add_argument("-n", "--namespace", help="namespace (default: default)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument("--timeout", default="30s",
                   help="how long to wait (Go duration, default 30s); 0 looks once, negative waits a week")
    p.add_argument("--name", help="cluster name (for running clusters)")


def parse_timeout(text: str) -> float:
    try:
        seconds = parse_duration(text) / 1e9
    except GoError as exc:
        raise WaitError(f'error: invalid argument "{text}" for "--timeout" flag: {exc}') from None
    return WEEK if seconds < 0 else seconds


def parse_resources(words: list[str], selector: str | None, every: bool) -> tuple[list[str], list[str]]:
    """(kinds, names) from `TYPE/NAME…` or `TYPE[,TYPE] [NAME…]`, with kubectl's errors; one
    kind when names are given."""
    if not words:
        raise WaitError(NO_RESOURCES)
    if "/" in words[0]:
        if any("/" not in word for word in words):
            raise WaitError("error: there is no need to specify a resource type as a separate argument when "
                            "passing arguments in resource/name form (e.g. 'podnet wait resource/<resource_name>' "
                            "instead of 'podnet wait resource resource/<resource_name>'")
        pairs = [word.split("/", 1) for word in words]
        kinds = [parse_kinds(kind)[0] for kind, _ in pairs]
        if len(set(kinds)) > 1:
            raise WaitError("error: podnet waits on objects of one type at a time (give one command per type)")
        kinds, names = kinds[:1], [name for _, name in pairs]
    else:
        kinds, names = parse_kinds(words[0]), words[1:]
    if names and selector:
        raise WaitError("error: name cannot be provided when a selector is specified")
    if not names and not selector and not every:
        raise WaitError("error: resource(s) were provided, but no name was specified")
    if names and len(kinds) > 1:
        raise WaitError("error: a name can only be given with a single resource type")
    return kinds, names


Key = tuple[str, str, str]  # kind, namespace, name


def run(args) -> int:
    goal = parse_for(args.for_)
    timeout = parse_timeout(args.timeout)
    kinds, names = parse_resources(args.resources, args.selector, args.all)
    namespace = args.namespace or "default"
    if names and args.all_namespaces and BY_KIND[kinds[0]].namespaced:
        raise WaitError("error: a resource cannot be retrieved by name across all namespaces")
    live, cluster = following(args.name)
    deadline = time.monotonic() + timeout
    matches = wanted(kinds, [], namespace, args.all_namespaces, args.selector)

    def selected(cluster: Cluster) -> list[Key]:
        return [key for kind in kinds for key in sorted(o.key for o in cluster.of_kind(kind) if matches(o))]

    if names:  # each named object, there or not (create waits for it, delete needs none)
        targets = [(kinds[0], namespace if BY_KIND[kinds[0]].namespaced else "", name) for name in names]
    else:
        targets = selected(cluster)
        while isinstance(goal, Create) and not targets:  # until something matches
            remaining = deadline - time.monotonic()
            if timeout == 0 or remaining <= 0:
                raise WaitError("error: timed out waiting for the condition")
            cluster = watching.reading_across_restarts(live, remaining, deadline=deadline)
            targets = selected(cluster)
    failures: list[str] = []
    if isinstance(goal, Delete):
        targets = [key for key in targets if key in cluster.objects]  # not there: nothing to wait for
        if not targets:
            return 0
    elif not isinstance(goal, Create):
        failures = [not_found(key) for key in targets if key not in cluster.objects]
        targets = [key for key in targets if key in cluster.objects]
        if not targets and not failures:
            raise WaitError("error: no matching resources found")
    failures += judge_until(goal, targets, cluster, live, deadline, once=timeout == 0)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    return 0


def judge_until(goal: Goal, targets: list[Key], cluster: Cluster, live, deadline: float, once: bool) -> list[str]:
    """Judge each target on every reading, in order, printing `KIND/NAME condition met` as it
    meets the goal, until all have or the deadline passes (`once`: the first reading only).
    Returns the failures, kubectl's lines."""
    failures, pending = [], targets
    while True:
        still = []
        for key in pending:
            try:
                done = judged(goal, cluster.objects.get(key), key)
            except WaitError as exc:
                failures.append(str(exc))
                continue
            if done:
                sys.stdout.write(f"{qualified(key[0])}/{key[2]} condition met\n")
                sys.stdout.flush()
            else:
                still.append(key)
        pending = still
        if not pending:
            return failures
        if once:
            return failures + [f"error: condition not met for {BY_KIND[k].plural}/{name}" for k, _, name in pending]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if isinstance(goal, Create):
                return failures + ["error: timed out waiting for the condition"]
            return failures + [f"error: timed out waiting for the condition on {BY_KIND[k].plural}/{name}"
                               for k, _, name in pending]
        cluster = watching.reading_across_restarts(live, remaining, deadline=deadline)


def judged(goal: Goal, obj: KubeObject | None, key) -> bool:
    """Whether `obj` (None: not there) meets the goal; an object gone while its condition was
    awaited is kubectl's NotFound."""
    if isinstance(goal, Delete):
        return obj is None
    if isinstance(goal, Create):
        return obj is not None
    if obj is None:
        raise WaitError(not_found(key))
    return goal.met(obj.body)


def not_found(key) -> str:
    kind, _, name = key
    return f'Error from server (NotFound): {BY_KIND[kind].plural} "{name}" not found'

