"""What the supervisor should do, decided without doing it: desired state in, actions out.

Desired state is the cluster the control plane computes from the admitted manifests (the
same `compute` the simulator uses); observed state is which pods the supervisor has started.
From the two come the actions: the pods to stop, the pods to start — then the proxies and
the L2 announcer are given the new cluster (published), always, since Services and
EndpointSlices may change without any pod doing so. Pure: nothing here touches the kernel,
a process or a file, so every rule is tested without root (tests/test_supervisor_reconcile.py).

Running pods are carried over: when the cluster is recomputed after an apply, a delete or a
readiness change, every pod that still belongs and already has an address is fed back in as
it is, so it keeps its name (a ReplicaSet's generated suffix) and its address, as pods do in
a real cluster.

The computing works on the bodies themselves: `admitted_bodies` admits already-parsed objects
(a JSON copy each, since admission defaults fields in place), with no YAML text between —
serialising every running pod and parsing it back cost most of an apply's time. And the
changes that steer NetworkPolicy — policies applied or deleted, running pods relabelled, or
objects applied again unchanged — are made to the running cluster as it is, without computing
it again (`changed_cluster`, podnet.controlplane.incremental): the same cluster, since compute is
pure and those changes reach nothing else (tests/test_incremental.py compares the two).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.api import fields
from podnet.api.kinds import object_key
from podnet.api.loader import LoadedFiles, RawManifest, parse_texts
from podnet.api.objects import KubeObject, Source
from podnet.api.store import ObjectStore, admit
from podnet.config import ClusterConfig, Networking
from podnet.controlplane import Cluster, compute, incremental, jobs
from podnet.controlplane import injection
from podnet.controlplane.cluster import ClusterChange
from podnet.errors import PodnetError
from podnet.linux.netlink import Change, Route, Sysctl
from podnet.semantics.topology import BRIDGE

Key = tuple[str, str, str]  # (kind, namespace, name); namespace "" for cluster-scoped kinds
Readiness = Callable[[KubeObject], "bool | None"]


def admitted(text: str, name: str) -> ObjectStore:
    """The objects of a List text (manifests.yaml, an apply's documents), admitted."""
    return admitted_files({name: text})


def admitted_files(texts: Mapping[str, str]) -> ObjectStore:
    """The objects of files' texts by name (`podnet apply -f`'s), admitted: a problem is
    reported at its file and line."""
    return admit(parse_texts(dict(texts)))


def admitted_bodies(bodies: list[dict[str, Any]], name: str) -> ObjectStore:
    """Objects already parsed (the inputs, carried-over pods), admitted as one List named
    `name` would be: each is copied first, so admission never changes the caller's bodies."""
    loaded = LoadedFiles()
    copies = json.loads(json.dumps(bodies))
    loaded.manifests = [RawManifest(body, Source(name, 0, index)) for index, body in enumerate(copies)]
    return admit(loaded)


def as_input(body: dict[str, Any]) -> dict[str, Any]:
    """A running pod fed back as input: spec, metadata and the status that holds its address."""
    metadata = {k: v for k, v in body["metadata"].items() if k not in ("uid",)}
    status = body.get("status") or {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": body.get("spec"),
            "status": {k: status[k] for k in ("phase", "podIP", "podIPs", "hostIP", "hostIPs", "containerStatuses",
                                              "conditions") if k in status}}


# the metadata a recomputation takes from the input rather than from the running pod
CARRIED_METADATA = ("labels", "annotations", "deletionTimestamp", "deletionGracePeriodSeconds")


def with_terminating(inputs: list[dict[str, Any]], terminating: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The inputs plus the pods being deleted, each as its body marked deleted (termination.py):
    until its processes are gone a terminating pod is part of the cluster — its address taken,
    its endpoint published terminating, no replica of its ReplicaSet. A bare pod applied again
    under the name of one still terminating waits for it to go (the API server refuses the
    name meanwhile), then starts."""
    marked = [as_input(body) for body in terminating]
    if not marked:
        return inputs
    keys = {object_key(body) for body in marked}
    return [body for body in inputs if object_key(body) not in keys] + marked


def desired_cluster(inputs: list[dict[str, Any]], config: ClusterConfig, readiness: Readiness,
                    keep: Cluster | None = None, observed: jobs.Observed | None = None) -> Cluster:
    """The cluster for `inputs`; pods of `keep` that still belong are carried over as they are:
    those the computation makes again, and every pod of a Job it still has (the Job controller
    made them over time, each wave as the last one finished: its next decision counts them all).
    `observed`: the time and kubelet's word on the Jobs' pods (compute)."""
    running = [key for key, pod in keep.objects.items() if key[0] == "Pod" and fields.pod_ip(pod)] if keep else []
    fresh = compute(admitted_bodies(inputs, "desired"), config, readiness, created_before=running, observed=observed)
    if keep is None:
        return fresh
    carried = []
    made = {pod.key for pod in fresh.of_kind("Pod")}
    for pod in fresh.of_kind("Pod") + [p for p in keep.of_kind("Pod") if p.key not in made and _job_still_has(fresh, p)]:
        old = keep.get("Pod", pod.namespace, pod.name)
        if old is not None and fields.pod_ip(old):
            # labels and annotations are the metadata an apply may change on a running pod (as
            # `kubectl label` does): those come from the new input, the rest stays as it runs
            body = {**old.body, "metadata": {**old.body["metadata"]}}
            # (and the deletion marks of a pod that began terminating: termination.py)
            for key in CARRIED_METADATA:
                if pod.body["metadata"].get(key) is not None:
                    body["metadata"][key] = pod.body["metadata"][key]
                else:
                    body["metadata"].pop(key, None)
            injection.keep_injected_marks(body["metadata"], old)  # the mesh injector's marks stay
            carried.append(body)
    carried_keys = {object_key(c) for c in carried}
    merged = [b for b in inputs if object_key(b) not in carried_keys] + [as_input(c) for c in carried]
    return compute(admitted_bodies(merged, "desired"), config, readiness, observed=observed)


def _job_still_has(cluster: Cluster, pod: KubeObject) -> bool:
    """The pod's controller is a Job `cluster` has (the same one: its uid)."""
    ref = fields.controller_of(pod)
    if ref is None or ref.get("kind") != "Job":
        return False
    job = cluster.get("Job", pod.namespace, ref.get("name", ""))
    return job is not None and job.metadata.get("uid") == ref.get("uid")


def changed_cluster(keep: Cluster, inputs: list[dict[str, Any]], store: ObjectStore,
                    delete: bool, index: Mapping[Key, dict[str, Any]] | None = None,
                    readiness: Callable[[KubeObject], bool | None] | None = None) -> Cluster | None:
    """The cluster after applying (deleting) `store`'s objects to `inputs`, whose cluster is
    `keep`, made from `keep` without computing it again; None when the change is not one of
    those (module doc), and the caller computes in full (desired_cluster). Readiness the
    prober reported since `keep` was computed is not taken in here: that report already asked
    the loop for a recomputation (Supervisor.recompute), which follows within a round.
    `readiness`: kubelet's word, for the pods a Deployment scaled up starts with (without it,
    a scale is computed in full)."""
    current = index if index is not None else inputs_by_key(inputs)
    policies, deleted, relabels, stored, unstored, scaled = [], [], [], [], [], []
    for obj in store.objects.values():
        # as admitted, like the request's objects (the inputs of `podnet up` are saved as written)
        before = admitted_bodies([current[obj.key]], "current").objects[obj.key].body if obj.key in current else None
        if delete:
            if obj.kind in incremental.STORED_AS_GIVEN:
                unstored.append(obj.key)
            elif obj.kind != "NetworkPolicy":
                return None
            else:
                deleted.append(obj.key)
        elif before == obj.body:
            continue  # applied again unchanged
        elif obj.kind in incremental.STORED_AS_GIVEN:
            stored.append(obj)
        elif obj.kind == "NetworkPolicy":
            policies.append(obj)
        elif obj.kind == "Pod" and before is not None and _only_metadata_differs(before, obj.body) \
                and _is_running(keep.get("Pod", obj.namespace, obj.name)):
            relabels.append(obj)
        elif obj.kind in incremental.WORKLOADS and before is not None and \
                _only_metadata_differs(before, obj.body, incremental.WORKLOAD_METADATA):
            relabels.append(obj)
        elif obj.kind == "Deployment" and before is not None and readiness is not None and \
                _only_metadata_differs(_without_replicas(before), _without_replicas(obj.body), incremental.WORKLOAD_METADATA):
            scaled.append(obj)
        else:
            return None
    cluster: Cluster | None = keep
    if policies or deleted:
        cluster = incremental.with_policies(keep, policies, deleted)
    if (stored or unstored) and cluster is not None:
        cluster = incremental.with_stored(cluster, stored, unstored)
    for obj in scaled:
        if cluster is None:
            break
        cluster = incremental.deployment_scaled(cluster, obj, readiness)
    for obj in relabels:
        if cluster is None:
            break
        metadata = obj.body["metadata"]
        if obj.kind in incremental.WORKLOADS:
            cluster = incremental.workload_relabelled(cluster, obj.key, metadata)
        else:
            cluster = incremental.relabelled(cluster, obj.key, metadata.get("labels"), metadata.get("annotations"))
    return cluster


def _without_replicas(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "spec": {k: v for k, v in (body.get("spec") or {}).items() if k != "replicas"}}


def _only_metadata_differs(before: dict[str, Any], after: dict[str, Any],
                           fields: tuple[str, ...] = ("labels", "annotations")) -> bool:
    """The two bodies differ at most in these metadata `fields`: what an apply may change on a
    running pod (`desired_cluster` takes those from the new input), or on a workload."""
    def rest(body: dict[str, Any]) -> dict[str, Any]:
        metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k not in fields}
        return {**body, "metadata": metadata}
    return rest(before) == rest(after)


def _is_running(pod: KubeObject | None) -> bool:
    """Running with an address: a pod the carry-over keeps as it is."""
    return pod is not None and bool(fields.pod_ip(pod)) and fields.phase(pod) == "Running"


def running_pods(cluster: Cluster) -> list[KubeObject]:
    """The pods that should have processes: phase Running."""
    return [p for p in cluster.of_kind("Pod") if fields.phase(p) == "Running"]


# ---- apply and delete ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeRequest:
    """`podnet apply -f` or `delete -f`, merged into the current inputs."""

    delete: bool
    inputs: list[dict[str, Any]]  # the desired inputs afterwards
    keys: tuple[Key, ...]  # the request's objects, sorted
    missing: frozenset[Key]  # delete: objects that were not there
    created: frozenset[Key]  # apply: objects that were not there before
    by_key: Mapping[Key, dict[str, Any]] = field(default_factory=dict)  # `inputs` by key (the next request's index)

    def lines(self, failed: Iterable[str] = ()) -> list[str]:
        """kubectl's answer: one line per object, NotFound for what delete did not find, and
        one line per pod that could not start."""
        def verb(key: Key) -> str:
            return "deleted" if self.delete else "created" if key in self.created else "configured"

        lines = [f"{k[0].lower()}/{k[2]} {verb(k)}" for k in self.keys if k not in self.missing]
        lines += [f'Error from server (NotFound): {k[0].lower()} "{k[2]}" not found' for k in self.keys
                  if k in self.missing]
        lines += [f"Error: pod {f} could not start" for f in failed]
        return lines


def inputs_by_key(inputs: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {object_key(b): b for b in inputs}


def change_request(inputs: list[dict[str, Any]], store: ObjectStore, delete: bool,
                   index: Mapping[Key, dict[str, Any]] | None = None) -> ChangeRequest:
    """Merge the request's objects (admitted: see `admitted`) into `inputs`: apply adds or
    replaces by key, delete removes. `index`: `inputs` by key, if the caller has it (the last
    request's `by_key`: 10,000 pods' inputs are not keyed again at every write)."""
    keys = {(o.kind, o.namespace, o.name) for o in store.objects.values()}
    current = dict(index) if index is not None else inputs_by_key(inputs)
    created: set[Key] = set()
    if delete:
        missing = {k for k in keys if k not in current}
        for key in keys:
            current.pop(key, None)
    else:
        missing = set()
        created = {obj.key for obj in store.objects.values() if obj.key not in current}
        for obj in store.objects.values():
            current[obj.key] = obj.body
    return ChangeRequest(delete, list(current.values()), tuple(sorted(keys)), frozenset(missing), frozenset(created),
                         current)


def check_nodes(running: Cluster, desired: Cluster, cluster_name: str) -> None:
    """A running cluster's nodes are fixed: a change that needs a new one is refused whole."""
    new_nodes = sorted({n.name for n in desired.nodes} - {n.name for n in running.nodes})
    if new_nodes:
        raise PodnetError(f"node {new_nodes[0]} does not exist in the running cluster {cluster_name} "
                          f"(its nodes: {', '.join(n.name for n in running.nodes)}); nothing was changed")


# ---- pods ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodActions:
    stop: tuple[str, ...]  # pod refs, sorted
    start: tuple[KubeObject, ...]  # sorted by ref

    @property
    def started(self) -> list[str]:
        return [p.ref for p in self.start]


def pod_actions(desired: Cluster, started: Iterable[str]) -> PodActions:
    """Stop what was started and should no longer run; start what should run and was not. A
    pod already terminating is neither: its termination is under way (termination.py)."""
    return RunningPods().actions(desired, started)


class RunningPods:
    """pod_actions for a supervisor: which pods a cluster wants running (phase Running, not
    terminating) and which are terminating, kept from one cluster to the next by what changed
    (ClusterChange) instead of found again among every pod at each write (10,000 pods: ~15 ms)."""

    def __init__(self):
        self.cluster: Cluster | None = None
        self.wanted: dict[str, KubeObject] = {}
        self.terminating: set[str] = set()

    def actions(self, desired: Cluster, started: Iterable[str], change: ClusterChange | None = None) -> PodActions:
        self._follow(desired, change)
        started = set(started)
        return PodActions(stop=tuple(sorted(started - self.wanted.keys() - self.terminating)),
                          start=tuple(self.wanted[ref] for ref in sorted(self.wanted.keys() - started)))

    def _follow(self, desired: Cluster, change: ClusterChange | None) -> None:
        if desired is self.cluster:
            return
        if change is not None and change.after is desired and change.before is not None \
                and change.before is self.cluster:
            pods = [obj for key, obj in change.changed if key[0] == "Pod"]
            for kind, namespace, name in change.gone:
                if kind == "Pod":
                    self._forget(f"{namespace}/{name}")
        else:
            self.wanted, self.terminating = {}, set()
            pods = [obj for obj in desired.objects.values() if obj.kind == "Pod"]
        for pod in pods:
            self._forget(pod.ref)
            if fields.phase(pod) == "Running":
                if fields.is_terminating(pod):
                    self.terminating.add(pod.ref)
                else:
                    self.wanted[pod.ref] = pod
        self.cluster = desired

    def _forget(self, ref: str) -> None:
        self.wanted.pop(ref, None)
        self.terminating.discard(ref)


# ---- nodes --------------------------------------------------------------------------------------


def node_changes(networking: Networking) -> list[Change]:
    """What kube-proxy needs of every node beyond the network plan, as one batch of changes.

    Bridged packets must see netfilter (br_netfilter): a pod reaching a Service backed by a
    pod on its own bridge gets its replies un-NATed on the way back. The node's own packets to
    a ClusterIP need a route before the proxy's DNAT picks the real destination (nodes have no
    default route: the sandbox rule). It points into cni0, so a pod's packet to a VIP nobody
    serves is "forwarded" back out the interface it came in on: no ICMP redirects for that, or
    they would use up the ICMP rate limit the proxy's port-unreachable rejects need. "set"
    replaces, so applying it again changes nothing (as `ip route replace` did)."""
    return [Change("set", Sysctl("net.bridge.bridge-nf-call-iptables", "1")),
            Change("set", Sysctl("net.ipv4.conf.all.send_redirects", "0")),
            Change("set", Sysctl(f"net.ipv4.conf.{BRIDGE}.send_redirects", "0")),
            Change("set", Route(str(networking.service_subnet), BRIDGE))]
