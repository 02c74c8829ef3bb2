"""compute(): admitted objects + cluster config → every object as a running cluster would show it."""

from __future__ import annotations

import json
import operator
import weakref
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from itertools import compress

from ipaddress import IPv4Address

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.api.positions import LineFinder
from podnet.api.problems import FieldPath
from podnet.api.store import ObjectStore
from podnet.config import ClusterConfig
from podnet.controlplane import endpoints as endpoint_controller
from podnet.controlplane import pods as pod_status
from podnet.controlplane import services as service_allocation
from podnet.controlplane import injection, jobs, rbac, serviceaccounts, system, workloads
from podnet.controlplane.clusterindex import ClusterIndex, index_of, updated
from podnet.controlplane.nodes import NodeInfo, build_nodes
from podnet.controlplane.scheduler import Scheduler
from podnet.errors import InvalidInput
from podnet.ipam import RangeAllocator, RangeFull

Key = tuple[str, str, str]


@dataclass
class Cluster:
    """The computed cluster: what `kubectl get` would show, plus typed node addressing."""

    config: ClusterConfig
    objects: dict[Key, KubeObject] = field(default_factory=dict)
    nodes: list[NodeInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lines: LineFinder = field(default_factory=lambda: LineFinder({}))
    # made on first use, or carried from the cluster this one was made from (ClusterChange)
    _index: ClusterIndex | None = field(default=None, init=False, repr=False, compare=False)
    # the clusters this one was made from, the last first and a few before it (weakly: no chain
    # of every cluster is kept), each with the keys touched or removed since it:
    # ClusterChange.between from any of them without a pass over both
    _made_from: tuple[tuple[weakref.ref, frozenset[Key]], ...] = field(default=(), init=False, repr=False, compare=False)

    def add(self, obj: KubeObject) -> None:
        system.stamp_uid(obj)
        self.objects[obj.key] = obj
        self._index, self._made_from = None, ()  # what they said no longer holds

    @property
    def index(self) -> ClusterIndex:
        """The objects by kind and namespace, the pods by node (clusterindex.py)."""
        if self._index is None:
            self._index = index_of(self.objects)
        return self._index

    def index_from(self, before: "Cluster", changed: Iterable[tuple[Key, KubeObject]], gone: Iterable[Key]) -> None:
        """Take `before`'s index with `changed` (added or replaced) and `gone` (removed): what
        this cluster's objects are, made from those of `before`."""
        self._index = updated(before.index, before.objects, changed, gone)

    def made_from(self, before: "Cluster", touched: Iterable[Key], gone: Iterable[Key]) -> None:
        """This cluster's objects are `before`'s, but those of `touched` (added or replaced; or
        left as they were) and those of `gone` (removed): its index and its ClusterChange
        from `before` follow from them alone."""
        touched, gone = frozenset(touched), frozenset(gone)
        keys = touched | gone
        self._made_from = ((weakref.ref(before), keys),
                           *((ancestor, earlier | keys) for ancestor, earlier in before._made_from[:_MADE_STEPS - 1]))
        self.index_from(before, [(key, self.objects[key]) for key in touched if key in self.objects], gone)

    def get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        return self.objects.get((kind, namespace, name))

    def of_kind(self, kind: str, namespace: str | None = None) -> list[KubeObject]:
        found = [o for o in self.objects.values() if o.kind == kind and (namespace is None or o.namespace == namespace)]
        return sorted(found, key=lambda o: (o.namespace, o.name))

    def node(self, name: str) -> NodeInfo | None:
        return next((n for n in self.nodes if n.name == name), None)


@dataclass(frozen=True)
class ClusterChange:
    """What differs between a computed cluster and the one it was made from. Computed clusters
    are never changed once made, and a change that is not computed in full (incremental.py)
    shares every object it does not touch: identity tells what changed. At 10,000 pods a write
    then costs its consumers (the API fields, the pods to start, the NetworkPolicy sync) what
    it changed, not a pass over every object each."""

    before: Cluster | None
    after: Cluster
    changed: tuple[tuple[Key, KubeObject], ...]  # added or replaced, in change_order
    gone: tuple[Key, ...]  # in change_order

    @classmethod
    def between(cls, before: Cluster | None, after: Cluster) -> "ClusterChange":
        if before is None:
            return cls(None, after, tuple(sorted(after.objects.items(), key=_item_order)), ())
        old, new = before.objects, after.objects
        keys = _made_between(before, after)
        if keys is not None:  # what the makings touched is all there is to compare
            changed = [(key, new[key]) for key in keys if key in new and old.get(key) is not new[key]]
            gone = [key for key in keys if key in old and key not in new]
        else:  # in C, not a Python loop over every object (25,000 at 10,000 pods: 8 ms -> 2)
            changed = list(compress(new.items(), map(operator.is_not, map(old.get, new), new.values())))
            gone = list(compress(old, map(operator.not_, map(new.__contains__, old))))
        return cls(before, after, tuple(sorted(changed, key=_item_order)), tuple(sorted(gone, key=change_order)))

    def carry_index(self) -> None:
        """Give `after` its index, if it has none yet: `before`'s with this change's objects
        updated when `before` has one and the change is small, else made anew (a pass over
        every object, which a write that is not computed in full then does not pay)."""
        before, after = self.before, self.after
        if after._index is not None:
            return
        small = len(self.changed) + len(self.gone) < len(after.objects) // 4
        if before is not None and before._index is not None and small:
            after.index_from(before, self.changed, self.gone)
        else:
            after._index = index_of(after.objects)

    def touches(self, kinds: Collection[str]) -> bool:
        """Whether an object of one of `kinds` was added, replaced or removed."""
        return any(key[0] in kinds for key, _ in self.changed) or any(key[0] in kinds for key in self.gone)


# the kinds in the order compute adds them: a change lists what it touched in this order (then
# by key), so watchers see a namespace before what is in it, a ReplicaSet before its pods, a
# Service before its endpoints, whichever way the change was found
_KIND_ORDER = {kind: rank for rank, kind in enumerate((
    "Namespace", "ConfigMap", "Secret", "NetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy",
    "Ingress", "IngressClass", "Node", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Pod", "Service",
    "EndpointSlice", "Endpoints"))}


def change_order(key: Key) -> tuple[int, Key]:
    """Where an object comes among those a change touched (ClusterChange, ApiMeta)."""
    return (_KIND_ORDER.get(key[0], len(_KIND_ORDER)), key)


def _item_order(item: tuple[Key, KubeObject]) -> tuple[int, Key]:
    return change_order(item[0])
_MADE_STEPS = 4  # how many makings back a cluster remembers (Cluster._made_from)


def _made_between(before: Cluster, after: Cluster) -> frozenset[Key] | None:
    """The keys touched or removed by the makings (Cluster.made_from) that led from `before`
    to `after`, if `after` was made from `before` in a few steps; None if not."""
    return next((keys for ancestor, keys in after._made_from if ancestor() is before), None)


def _warn_shared_priorities(policies: list[KubeObject], warn: Callable[[KubeObject, str], None]) -> None:
    """Upstream leaves it to the implementation which of two AdminNetworkPolicies with the same
    priority applies when both match a connection: valid, but worth a word to the admin."""
    first: dict[int, KubeObject] = {}
    for policy in sorted(policies, key=lambda p: p.name):
        priority = policy.spec.get("priority")
        if priority in first:
            warn(policy, f"spec.priority {priority} is shared with AdminNetworkPolicy {first[priority].name}: which of "
                         "the two applies to a connection both match is not defined (give each its own priority)")
        else:
            first[priority] = policy


def _clone(obj: KubeObject) -> KubeObject:
    """A private copy, so computing never changes the admitted input (it can be computed again)."""
    return KubeObject(obj.kind, obj.namespace, obj.name, json.loads(json.dumps(obj.body)), obj.source)


def compute(store: ObjectStore, config: ClusterConfig,
            live_readiness: Callable[[KubeObject], bool | None] | None = None,
            created_before: Collection[Key] = (), observed: jobs.Observed | None = None) -> Cluster:
    """The cluster for `store`. `live_readiness` is kubelet's word on a running cluster: for a
    pod, whether its containers are ready (its probes), or None to keep the offline rule.
    `created_before`: pods that exist already (running, fed in again as written): the mesh's
    injector, which sees a pod's creation only, leaves them as they are. `observed`: a running
    cluster's time and kubelet's word on the Jobs' pods (the Job controller goes on from them)."""
    cluster = Cluster(config=config, warnings=list(store.warnings), lines=store.lines)
    errors: list[str] = []

    def error(obj: KubeObject, path: FieldPath, message: str) -> None:
        errors.append(store.locate(obj, path, message))

    def warn(obj: KubeObject, message: str) -> None:
        cluster.warnings.append(f"warning: {obj.kind} {obj.ref}: {message}")

    inputs = [_clone(o) for o in sorted(store.objects.values(), key=lambda o: o.key)]
    by_kind: dict[str, list[KubeObject]] = defaultdict(list)
    for obj in inputs:
        by_kind[obj.kind].append(obj)

    # the add-on, unless the input brings a controller of its own (the seed's, a Helm release):
    # two controllers would each serve the same Ingresses
    if by_kind["Ingress"] and not any(system.runs_ingress_nginx(o) for o in inputs):
        has_class = any(c.spec.get("controller") == system.INGRESS_CONTROLLER for c in by_kind["IngressClass"])
        for obj in system.ingress_nginx_addon(with_class=not has_class):
            by_kind[obj.kind].append(obj)
    # kubeadm's baseline, unless the input brings its own (e.g. piped from a live cluster)
    for obj in system.dns_addon(config):
        if not store.get(obj.kind, obj.namespace, obj.name):
            by_kind[obj.kind].insert(0, obj)
    system_services = [] if store.get("Service", "default", "kubernetes") else [system.kubernetes_service(config)]
    _namespaces(cluster, by_kind)
    policy_kinds = ("NetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy")
    for kind in ("ConfigMap", "Secret", *policy_kinds, "Ingress", "IngressClass"):
        for obj in by_kind[kind]:
            cluster.add(obj)
    _warn_shared_priorities(by_kind["AdminNetworkPolicy"], warn)
    if config.networking.proxy_mode == "userspace":
        # The userspace proxy ends a pod's Service connection on the node and opens a new one from
        # the node's address: no policy could judge the client, and the backend sees its own node.
        for kind in policy_kinds:
            for obj in by_kind[kind]:
                error(obj, ("spec",), f"Forbidden: {kind} is not enforced through the userspace proxy "
                                      "(proxyMode: userspace); use proxyMode nftables or iptables")

    referenced = {p.spec.get("nodeName") for p in by_kind["Pod"] if (p.spec or {}).get("nodeName")}
    node_infos, node_objects, node_warnings = build_nodes(config, by_kind["Node"], referenced)
    cluster.warnings += node_warnings
    cluster.nodes = node_infos
    for node in node_objects:
        cluster.add(node)

    all_pods = _run_workloads(cluster, by_kind, node_objects, frozenset(created_before), observed)
    _schedule_and_address(cluster, all_pods, node_infos, node_objects, error, live_readiness)
    _workload_status(cluster, by_kind, all_pods, observed)

    # The cluster's own Services (generated, no source) claim their fixed addresses first.
    services = system_services + sorted(by_kind["Service"], key=lambda s: (s.source is not None, s.key))
    for svc in services:
        service_allocation.apply_service_defaults(svc)
    service_allocation.allocate_cluster_ips(services, config.networking, error)
    service_allocation.allocate_node_ports(services, config.networking, error)
    service_allocation.assign_load_balancer_ips(services, config.networking, warn)
    for svc in services:
        cluster.add(svc)

    _endpoints(cluster, services, by_kind, all_pods, node_objects)
    _ingress_status(cluster)
    _stored(cluster, by_kind)
    if errors:
        raise InvalidInput(errors)
    return cluster


# The kinds compute() itself decides about; any other admitted kind is an input that nothing
# here reads (ServiceAccounts, RBAC's objects for the API server's authorizer): stored as given.
COMPUTED_KINDS = frozenset({
    "Namespace", "Node", "Pod", "Service", "Endpoints", "EndpointSlice", "Deployment", "ReplicaSet", "StatefulSet",
    "DaemonSet", "Job", "NetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "Ingress", "IngressClass",
    "ConfigMap", "Secret",
})


def _stored(cluster: Cluster, by_kind: dict[str, list[KubeObject]]) -> None:
    """The kinds only stored, with what every cluster has of them: each namespace's `default`
    ServiceAccount (its controller's) and RBAC's bootstrap policy, ClusterRoles aggregated.
    Added last, so they change nothing computed before them."""
    given = {o.key for kind, objs in by_kind.items() if kind not in COMPUTED_KINDS for o in objs}
    made = [serviceaccounts.default_service_account(ns.name) for ns in cluster.of_kind("Namespace")]
    made += rbac.bootstrap_policy()
    stored = sorted([o for kind, objs in by_kind.items() if kind not in COMPUTED_KINDS for o in objs]
                    + [o for o in made if o.key not in given], key=lambda o: o.key)  # the input's own win
    rbac.aggregate(o for o in stored if o.kind == "ClusterRole")
    for obj in stored:
        if obj.kind in ("RoleBinding", "ClusterRoleBinding"):
            rbac.apply_binding_defaults(obj)
        cluster.add(obj)


def _ingress_status(cluster: Cluster) -> None:
    """The controller publishes its LoadBalancer address on the Ingresses it serves (--publish-service)."""
    controller = cluster.get("Service", system.INGRESS_NAMESPACE, system.INGRESS_SERVICE)
    if controller is None:
        return
    published = fields.load_balancer_ips(controller)
    ours = {c.name for c in cluster.of_kind("IngressClass") if c.spec.get("controller") == system.INGRESS_CONTROLLER}
    default = {c.name for c in cluster.of_kind("IngressClass")
               if c.annotations.get("ingressclass.kubernetes.io/is-default-class") == "true"} & ours
    for ingress in cluster.of_kind("Ingress"):
        name = ingress.spec.get("ingressClassName") or ingress.annotations.get("kubernetes.io/ingress.class")
        if (name in ours) or (name is None and default):
            ingress.body["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in published]}}
        else:
            ingress.body["status"] = {"loadBalancer": {}}


def _namespaces(cluster: Cluster, by_kind: dict[str, list[KubeObject]]) -> None:
    declared = {ns.name: ns for ns in by_kind["Namespace"]}
    for name in system.SYSTEM_NAMESPACES:
        declared.setdefault(name, system.namespace_object(name))
    used = sorted({o.namespace for kind, objs in by_kind.items() for o in objs if o.namespace})
    for name in used:
        if name not in declared:
            declared[name] = system.namespace_object(name)
            cluster.warnings.append(f"warning: namespace {name} is used but not defined in the input; created it")
    for name, ns in sorted(declared.items()):
        ns.metadata_for_update().setdefault("labels", {})[system.NAMESPACE_NAME_LABEL] = name
        ns.body.setdefault("spec", {"finalizers": ["kubernetes"]})
        ns.body["status"] = {"phase": "Active"}
        cluster.add(ns)


def _run_workloads(cluster: Cluster, by_kind: dict[str, list[KubeObject]], nodes: list[KubeObject],
                   created_before: frozenset[Key] = frozenset(),
                   observed: jobs.Observed | None = None) -> list[KubeObject]:
    """Controllers in dependency order; returns every pod, user-written and generated."""
    pods = list(by_kind["Pod"])
    for pod in pods:
        pod_status.apply_pod_spec_defaults(pod.body.setdefault("spec", {}))
    index = workloads.PodIndex(pods)

    replicasets = list(by_kind["ReplicaSet"])
    for deployment in by_kind["Deployment"]:
        cluster.add(deployment)
        replicasets += workloads.deployment_replicasets(deployment, by_kind["ReplicaSet"])
    for rs in sorted(replicasets, key=lambda o: o.key):
        cluster.add(rs)
        for pod in workloads.replicaset_pods(rs, index):
            index.add(pod)
            pods.append(pod)
    for sts in by_kind["StatefulSet"]:
        cluster.add(sts)
        for pod in workloads.statefulset_pods(sts, index):
            index.add(pod)
            pods.append(pod)
    for job in by_kind["Job"]:
        system.stamp_uid(job)
        workloads.apply_job_defaults(job)
        cluster.add(job)
        for pod in workloads.job_pods(job, index, observed):
            index.add(pod)
            pods.append(pod)
    scheduler = Scheduler(nodes, {n.name: 0 for n in nodes})  # feasibility only
    for ds in by_kind["DaemonSet"]:
        cluster.add(ds)
        for pod, _node in workloads.daemonset_pods(ds, [n.name for n in nodes], index, scheduler.statically_feasible):
            index.add(pod)
            pods.append(pod)
    for pod in pods:  # the mesh's admission webhook, on each pod being created
        if pod.key not in created_before:
            injection.inject(pod, cluster.get("Namespace", "", pod.namespace))
    return sorted(pods, key=lambda p: (p.namespace, p.name))


def _schedule_and_address(cluster: Cluster, pods: list[KubeObject], infos: list[NodeInfo],
                          nodes: list[KubeObject], error, live_readiness=None) -> None:
    scheduler = Scheduler(nodes, {n.name: n.max_pods for n in infos})
    by_name = {n.name: n for n in infos}
    allocators = {n.name: RangeAllocator(n.pod_cidr) for n in infos}
    kept: dict = {}
    unbound = []
    for pod in pods:  # pods already bound are counted before any spreading
        node = pod.spec.get("nodeName")
        if fields.is_terminal(pod):
            continue
        if node and scheduler.has_node(node):
            if not scheduler.fits_host_ports(pod, node):
                pod.body["status"] = {"phase": "Failed", "reason": "NodePorts",
                                      "message": "Pod was rejected: node(s) didn't have free ports for the "
                                                 "requested pod ports"}
                continue
            scheduler.bind(pod, node)
        elif not node:
            unbound.append(pod)
    # kube-scheduler's queue orders by priority: system-critical pods (coredns) place first.
    for pod in sorted(unbound, key=lambda p: -_priority(p)):
        node, message = scheduler.schedule(pod)
        if node:
            pod.spec["nodeName"] = node
        else:
            pod.body["status"] = pod_status.pending_status(pod, "Unschedulable", message)
    for pod in pods:  # addresses that pods piped from a live cluster already have are kept
        ip, node = fields.pod_ip(pod), pod.spec.get("nodeName")
        if ip and node in allocators and not pod.spec.get("hostNetwork") and not fields.is_terminal(pod):
            try:
                if allocators[node].reserve(IPv4Address(ip)):
                    kept[pod.key] = ip
            except ValueError:
                pass
    for pod in pods:
        cluster.add(pod)
        node = pod.spec.get("nodeName")
        if fields.is_terminal(pod) or not node:
            continue
        info = by_name.get(node)
        if info is None:
            pod.body["status"] = pod_status.pending_status(pod, "NodeNotFound", f"node {node} does not exist in this cluster")
            continue
        if pod.spec.get("hostNetwork"):
            address = str(info.ip)
        elif pod.key in kept:
            address = kept[pod.key]
        else:
            try:
                address = str(allocators[node].allocate())
            except RangeFull:
                pod.body["status"] = pod_status.pending_status(
                    pod, "FailedCreatePodSandBox", f"no IP addresses available in range set: {info.pod_cidr}")
                continue
        set_running(pod, info, address, live_readiness)


def set_running(pod: KubeObject, info: NodeInfo, address: str,
                live_readiness: Callable[[KubeObject], bool | None] | None) -> None:
    """A placed and addressed pod's status: Running, ready by kubelet's word (`live_readiness`)
    or by the offline rule."""
    live = live_readiness(pod) if live_readiness is not None else None
    if live is not None:
        pod_status.set_containers_ready(pod, live)
    ready = not pod_status.input_says_not_ready(pod)
    pod.body["status"] = pod_status.running_status(pod, str(info.ip), address, ready)


_BUILTIN_PRIORITIES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}


def _priority(pod: KubeObject) -> int:
    if pod.spec.get("priority") is not None:
        return int(pod.spec["priority"])
    return _BUILTIN_PRIORITIES.get(pod.spec.get("priorityClassName") or "", 0)


def _workload_status(cluster: Cluster, by_kind: dict[str, list[KubeObject]], pods: list[KubeObject],
                     observed: jobs.Observed | None = None) -> None:
    owned = workloads.active_by_owner(pods)
    for rs in cluster.of_kind("ReplicaSet"):
        workloads.fill_owner_status(rs, owned[("ReplicaSet", rs.namespace, rs.name)])
    rs_by_deployment: dict[tuple[str, str], list[KubeObject]] = defaultdict(list)
    for rs in cluster.of_kind("ReplicaSet"):
        ref = fields.controller_of(rs)
        if ref and ref.get("kind") == "Deployment":
            rs_by_deployment[(rs.namespace, ref.get("name"))].extend(owned[("ReplicaSet", rs.namespace, rs.name)])
    for deployment in cluster.of_kind("Deployment"):
        workloads.fill_workload_status(deployment, rs_by_deployment[(deployment.namespace, deployment.name)])
    for workload in cluster.of_kind("StatefulSet") + cluster.of_kind("DaemonSet"):
        workloads.fill_owner_status(workload, owned[(workload.kind, workload.namespace, workload.name)])
    by_job: dict[tuple[str, str], list[KubeObject]] = defaultdict(list)  # finished pods too
    for pod in pods:
        ref = fields.controller_of(pod)
        if ref and ref.get("kind") == "Job":
            by_job[(pod.namespace, ref.get("name"))].append(pod)
    for job in cluster.of_kind("Job"):
        workloads.fill_job_status(job, by_job[(job.namespace, job.name)], observed)


def _endpoints(cluster: Cluster, services: list[KubeObject], by_kind: dict[str, list[KubeObject]],
               pods: list[KubeObject], nodes: list[KubeObject]) -> None:
    controller = endpoint_controller.EndpointsController(pods, nodes)
    user_endpoints = {(e.namespace, e.name): e for e in by_kind["Endpoints"]}
    user_slices: dict[tuple[str, str], list[KubeObject]] = defaultdict(list)
    for s in by_kind["EndpointSlice"]:
        endpoint_controller.apply_slice_defaults(s)
        user_slices[(s.namespace, s.labels.get(endpoint_controller.SERVICE_NAME, ""))].append(s)
    for svc in services:
        key = (svc.namespace, svc.name)
        if svc.spec.get("type") == "ExternalName":
            continue
        given_slices = user_slices.pop(key, [])
        if svc.spec.get("selector"):
            # The controller owns the slices labelled as its own (piped in from a live cluster they
            # are recomputed); slices another manager wrote stay as they are.
            for s in given_slices:
                if s.labels.get(endpoint_controller.MANAGED_BY) != endpoint_controller.SLICE_CONTROLLER:
                    cluster.add(s)
            slices = controller.slices_for(svc)
            for s in slices:
                cluster.add(s)
            cluster.add(controller.endpoints_for(svc, slices))
            continue
        if svc.namespace == "default" and svc.name == "kubernetes" and key not in user_endpoints:
            apiserver = str(cluster.nodes[0].ip)
            cluster.add(system.kubernetes_endpoints(apiserver))
            cluster.add(system.kubernetes_endpointslice(apiserver))
            continue
        for s in given_slices:
            if s.labels.get(endpoint_controller.MANAGED_BY) != endpoint_controller.MIRRORING_CONTROLLER:
                cluster.add(s)
        endpoints = user_endpoints.get(key)
        if endpoints is not None:
            cluster.add(endpoints)
            if endpoints.labels.get("endpointslice.kubernetes.io/skip-mirror") != "true":
                for s in endpoint_controller.mirror_endpoints(svc, endpoints):
                    cluster.add(s)
    # Endpoints and slices of no Service (or of a selector-less one handled above) are kept as given.
    for (namespace, service), slices in user_slices.items():
        if not cluster.get("Service", namespace, service):
            for s in slices:
                cluster.add(s)
    for key, e in user_endpoints.items():
        if not cluster.get("Service", *key):
            cluster.add(e)

