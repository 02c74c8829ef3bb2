"""Changes a computed cluster takes without computing it again.

The cluster after a change is always `compute` of the new inputs, but computing it again costs
time in proportion to the cluster (every pod scheduled, addressed and matched to its Services
once more), while the changes that steer NetworkPolicy — a policy applied or deleted, a pod's
labels changed — touch almost nothing of it. This module makes exactly those changes to a
computed cluster and refuses (None) whenever one could reach further than what it rewrites;
the caller then computes in full. What it relies on, all of it in cluster.compute:

- a NetworkPolicy is copied into the cluster as it is, uid stamped, among the other policies
  (sorted by key, after the Namespaces, ConfigMaps and Secrets); nothing else in the control
  plane reads it, except that its namespace is created if nothing declares it and that the
  userspace proxy refuses policies — both refused here, so the full computation says it;
- a pod's labels are read by Services' selectors (their EndpointSlices) and by ReplicaSets'
  (which adopt matching orphans): refused if the pod has an owner, or a ReplicaSet or a
  Service of its namespace selects its old or its new labels; its annotations are read by
  nothing.

- a workload's (Deployment, StatefulSet, DaemonSet) own labels and annotations are read by
  nothing (its pods and ReplicaSets take theirs from the template);
- a ConfigMap or a Secret is copied in as it is; a ServiceAccount, a Role, a RoleBinding or a
  ClusterRoleBinding is stored as given (bindings defaulted), read by nothing compute does:
  the same rules for their namespaces; a ClusterRole is refused (aggregation reads the others),
  and so is deleting a `default` ServiceAccount (the controller makes it again).

The objects the change does not touch are shared with the cluster given: computed clusters are
never changed once made. tests/test_incremental.py compares the results with full computations,
on scripted and on random changes.
"""

from __future__ import annotations

import bisect
import json
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain, islice
from ipaddress import IPv4Address
from dataclasses import replace

from podnet.api import fields
from podnet.api import labels as selectors
from podnet.api.objects import KubeObject
from podnet.controlplane import endpoints as endpoints_module
from podnet.controlplane import injection, rbac, serviceaccounts, system, workloads
from podnet.controlplane.cluster import COMPUTED_KINDS, Cluster, Key, set_running
from podnet.controlplane.endpoints import EndpointsController
from podnet.controlplane.pods import apply_pod_spec_defaults, declared_host_ports
from podnet.controlplane.scheduler import Scheduler
from podnet.ipam import RangeAllocator, RangeFull

# the kinds compute adds before the NetworkPolicies, in this order
_BEFORE_POLICIES = ("Namespace", "ConfigMap", "Secret")


def with_policies(cluster: Cluster, applied: Iterable[KubeObject], deleted: Iterable[Key]) -> Cluster | None:
    """`cluster` with the NetworkPolicies `applied` (admitted objects: added or replacing the
    ones of their key) and without those of `deleted`; None if that could change more."""
    applied, deleted = list(applied), set(deleted)
    if any(o.kind != "NetworkPolicy" for o in applied) or any(k[0] != "NetworkPolicy" for k in deleted):
        return None
    if applied and cluster.config.networking.proxy_mode == "userspace":
        return None  # compute refuses them: let it say so
    for obj in applied:  # an undeclared namespace would be created (with a warning)
        if cluster.get("Namespace", "", obj.namespace) is None:
            return None
    gone_namespaces = {k[1] for k in deleted if k not in {o.key for o in applied}}
    if gone_namespaces and not _still_used(cluster, gone_namespaces, deleted):
        return None
    policies = {k: o for k, o in cluster.objects.items() if o.kind == "NetworkPolicy" and k not in deleted}
    for obj in applied:
        policy = KubeObject(obj.kind, obj.namespace, obj.name, json.loads(json.dumps(obj.body)), obj.source)
        system.stamp_uid(policy)
        policies[policy.key] = policy
    objects: dict[Key, KubeObject] = {}
    placed = False
    for key, obj in cluster.objects.items():
        if obj.kind == "NetworkPolicy":
            continue
        if not placed and obj.kind not in _BEFORE_POLICIES:
            objects.update(sorted(policies.items()))
            placed = True
        objects[key] = obj
    if not placed:
        objects.update(sorted(policies.items()))
    return _made(cluster, objects, [o.key for o in applied], deleted)


def _still_used(cluster: Cluster, namespaces: set[str], deleted: set[Key]) -> bool:
    """Every one of `namespaces` still holds an object other than the deleted ones, so compute
    keeps it (it might also be declared; without such an object that is not known here). The
    `default` ServiceAccount the controller put in it does not count: it goes with the namespace."""
    used = {o.namespace for k, o in cluster.objects.items()
            if k not in deleted and o.kind != "Namespace" and not serviceaccounts.is_generated(o)}
    return namespaces <= used


def relabelled(cluster: Cluster, key: Key, labels: Mapping[str, str] | None,
               annotations: Mapping[str, str] | None) -> Cluster | None:
    """`cluster` with the pod of `key` given these labels and annotations (None: none), the
    rest of it as it is; None if that could change more (see the module doc)."""
    pod = cluster.objects.get(key)
    if pod is None or pod.kind != "Pod" or pod.metadata.get("ownerReferences"):
        return None
    old, new = pod.labels, dict(labels or {})
    for rs in cluster.index.of("ReplicaSet", pod.namespace).values():
        selector = selectors.from_label_selector(rs.spec.get("selector"))
        if selector.matches(old) or selector.matches(new):
            return None
    for svc in cluster.index.of("Service", pod.namespace).values():
        if svc.spec.get("selector"):
            selector = selectors.from_set(svc.spec.get("selector"))
            if selector.matches(old) or selector.matches(new):
                return None
    body = json.loads(json.dumps(pod.body))
    for name, value in (("labels", labels), ("annotations", annotations)):
        if value is not None:
            body["metadata"][name] = json.loads(json.dumps(value))
        else:
            body["metadata"].pop(name, None)
    injection.keep_injected_marks(body["metadata"], pod)
    objects = dict(cluster.objects)
    objects[key] = KubeObject(pod.kind, pod.namespace, pod.name, body, pod.source)
    return _made(cluster, objects, [key], ())



# the kinds compute copies in, or stores as given, without reading them for anything else
STORED_AS_GIVEN = frozenset({"ConfigMap", "Secret", "ServiceAccount", "Role", "RoleBinding", "ClusterRoleBinding",
                             "AuthorizationPolicy", "PeerAuthentication", "HTTPRoute"})


def with_stored(cluster: Cluster, applied: Iterable[KubeObject], deleted: Iterable[Key]) -> Cluster | None:
    """`cluster` with the objects `applied` (admitted: added or replacing) and without those of
    `deleted`, all of STORED_AS_GIVEN kinds; None if that could change more."""
    applied, deleted = list(applied), set(deleted)
    if any(o.kind not in STORED_AS_GIVEN for o in applied) or any(k[0] not in STORED_AS_GIVEN for k in deleted):
        return None
    for obj in applied:  # an undeclared namespace would be created (with a warning)
        if obj.namespace and cluster.get("Namespace", "", obj.namespace) is None:
            return None
    if any(k[0] == "ServiceAccount" and k[2] == serviceaccounts.DEFAULT for k in deleted):
        return None  # the controller's `default` comes back: compute says how
    gone_namespaces = {k[1] for k in deleted if k[1] and k not in {o.key for o in applied}}
    if gone_namespaces and not _still_used(cluster, gone_namespaces, deleted):
        return None
    objects = dict(cluster.objects)
    for key in deleted:
        objects.pop(key, None)
    added = []
    for obj in sorted(applied, key=lambda o: o.key):
        stored = KubeObject(obj.kind, obj.namespace, obj.name, json.loads(json.dumps(obj.body)), obj.source)
        if stored.kind in ("RoleBinding", "ClusterRoleBinding"):
            rbac.apply_binding_defaults(stored)
        system.stamp_uid(stored)
        if stored.key in objects:
            objects[stored.key] = stored  # replaced where it was: compute's order is by key
        else:
            added.append(stored)
    if added:  # placed among the others as compute would (the dict made again, in C: 25,000 objects)
        items = list(objects.items())
        for stored in added:
            items.insert(_place(items, stored), (stored.key, stored))
        objects = dict(items)
    return _made(cluster, objects, [o.key for o in applied], deleted)


def _made(cluster: Cluster, objects: dict[Key, KubeObject], touched: Iterable[Key], gone: Iterable[Key]) -> Cluster:
    """The cluster of `objects`, made from `cluster` by touching (adding or replacing) the
    objects of `touched` and removing those of `gone`: its index and its ClusterChange follow."""
    made = replace(cluster, objects=objects, warnings=list(cluster.warnings))
    made.made_from(cluster, touched, gone)
    return made


def _place(items: list[tuple[Key, KubeObject]], obj: KubeObject) -> int:
    """Where compute puts `obj` among `items`: a ConfigMap or a Secret in its kind's run after
    the Namespaces (ConfigMaps, then Secrets, each by key after the cluster's own); a stored kind in the tail compute
    adds last, sorted by key across kinds."""
    if obj.kind in _BEFORE_POLICIES:
        earlier = _BEFORE_POLICIES[:_BEFORE_POLICIES.index(obj.kind)]
        for index, (key, other) in enumerate(items):
            # (the cluster's own — kube-system/coredns — come first: compute puts them before the input's)
            if other.kind not in earlier and (other.kind != obj.kind or (other.source is not None and key > obj.key)):
                return index
        return len(items)
    tail = next((i for i in range(len(items), 0, -1) if items[i - 1][1].kind in COMPUTED_KINDS), 0)
    for index in range(tail, len(items)):
        if items[index][0] > obj.key:
            return index
    return len(items)


WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
# a workload's metadata that nothing computed reads (managedFields: the API server's bookkeeping)
WORKLOAD_METADATA = ("labels", "annotations", "managedFields")


def workload_relabelled(cluster: Cluster, key: Key, metadata: Mapping) -> Cluster | None:
    """`cluster` with the workload of `key` given the WORKLOAD_METADATA of `metadata` (absent: none)."""
    workload = cluster.objects.get(key)
    if workload is None or workload.kind not in WORKLOADS:
        return None
    body = {**workload.body, "metadata": dict(workload.body.get("metadata") or {})}
    for name in WORKLOAD_METADATA:
        if metadata.get(name) is not None:
            body["metadata"][name] = json.loads(json.dumps(metadata[name]))
        else:
            body["metadata"].pop(name, None)
    objects = dict(cluster.objects)
    objects[key] = KubeObject(workload.kind, workload.namespace, workload.name, body, workload.source)
    return _made(cluster, objects, [key], ())


def deployment_scaled(cluster: Cluster, deployment: KubeObject,
                      live_readiness: Callable[[KubeObject], bool | None]) -> Cluster | None:
    """`cluster` with the Deployment `deployment` (admitted: its input as changed, nothing but
    spec.replicas and WORKLOAD_METADATA) scaled; None if that could change more. What compute
    does for it, with every running pod carried over as it runs (reconcile.desired_cluster): its
    ReplicaSet wants more pods, which take the next free names, the least loaded feasible nodes
    (scheduler.py) and the next free addresses of those nodes (ipam.py), or fewer, and those
    beyond its first names go (the supervisor then terminates them); the ReplicaSet's and the
    Deployment's status count them, and the Services selecting them get their endpoints.
    Refused whenever compute could decide anything else anew: a pod anywhere not yet placed
    and addressed (compute places it again, in priority order with the new ones), a pod of
    the namespace finished, a ReplicaSet of the Deployment other than the one
    compute makes, pods of it that are not the first names compute would give, a new pod that
    declares host ports or finds no node or no address (compute says why)."""
    old = cluster.objects.get(deployment.key)
    if old is None or old.kind != "Deployment":
        return None
    new = KubeObject(deployment.kind, deployment.namespace, deployment.name,
                     json.loads(json.dumps(deployment.body)), old.source)
    system.stamp_uid(new)
    [rs] = workloads.deployment_replicasets(new, [])
    system.stamp_uid(rs)
    if rs.key not in cluster.objects:
        return None
    namespace, wanted = new.namespace, workloads.replicas_of(new)
    index = cluster.index
    if index.unplaced:
        return None  # a pod not placed yet: compute would place it again
    ns_pods = list(index.of("Pod", namespace).values())
    if any(fields.is_terminal(pod) for pod in ns_pods):
        return None
    node_objects = _node_objects(cluster)
    owned_sets = [o for o in index.of("ReplicaSet", namespace).values()
                  if (ref := fields.controller_of(o)) is not None and ref.get("kind") == "Deployment"
                  and ref.get("name") == new.name]
    if [o.key for o in owned_sets] != [rs.key]:
        return None
    # the names compute gives: the first free ones; the running pods have the first of them
    mine, names = _replicas_and_names(rs, ns_pods)
    first = [next(names) for _ in range(max(wanted, len(mine)))]
    have = {p.name for p in mine}
    if len(mine) > wanted:  # scaled down: the pods beyond the first names go (and terminate)
        if not set(first[:wanted]) <= have:
            return None
        return pods_replaced(cluster, (), [p.key for p in mine if p.name not in first[:wanted]],
                             {new.key: new, rs.key: rs})
    if have != set(first[:len(mine)]):
        return None
    labels = dict(((rs.spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
    template = workloads.template_json(rs)
    created = sorted((workloads.pod_from_template(rs, name, labels, template) for name in first[len(mine):]),
                     key=lambda p: p.name)
    for pod in created:  # the mesh's admission webhook, as compute has it
        injection.inject(pod, cluster.get("Namespace", "", namespace))
    if any(declared_host_ports(p) for p in created):
        return None
    # placed among every pod bound, as compute's scheduler does (they declare no host port:
    # the bound pods' count on each node is all that decides)
    infos = {n.name: n for n in cluster.nodes}
    scheduler = Scheduler(node_objects, {n.name: n.max_pods for n in cluster.nodes})
    for node, pods in index.bound.items():
        if node and scheduler.has_node(node):
            scheduler.count_bound(node, len(pods))
    for pod in created:
        node, _message = scheduler.schedule(pod)
        if node is None or node not in infos:
            return None
        pod.spec["nodeName"] = node
    # addressed after every address its node has kept, as compute's allocators do
    allocators = {}
    for node in {p.spec["nodeName"] for p in created}:
        allocators[node] = RangeAllocator(infos[node].pod_cidr)
    for node, allocator in allocators.items():
        for pod in sorted(index.on_node(node).values(), key=lambda p: (p.namespace, p.name)):  # compute's order
            if not pod.spec.get("hostNetwork"):
                try:
                    allocator.reserve(IPv4Address(fields.pod_ip(pod)))
                except ValueError:
                    pass
    for pod in created:
        system.stamp_uid(pod)
        node = pod.spec["nodeName"]
        if pod.spec.get("hostNetwork"):
            address = str(infos[node].ip)
        else:
            try:
                address = str(allocators[node].allocate())
            except RangeFull:
                return None
        set_running(pod, infos[node], address, live_readiness)
    return pods_replaced(cluster, created, (), {new.key: new, rs.key: rs})


def pods_replaced(cluster: Cluster, pods: Iterable[KubeObject], gone: Iterable[Key],
                  replaced: Mapping[Key, KubeObject] | None = None) -> Cluster | None:
    """`cluster` with `pods` (placed, addressed, their status made: added, or replacing those of
    their keys) and without the pods of `gone`, and what compute derives from the pods made
    again for them: the status of the workloads owning them, before and after (workloads.py),
    the EndpointSlices and Endpoints of the Services selecting them, before and after
    (endpoints.py). `replaced`: other objects, as they are (a scaled workload's new spec; its
    status is made here). The caller knows that nothing else compute decides changes: no pod's
    labels change, no controller makes or names a pod anew. None if the objects are not laid
    out as compute lays them out."""
    pods, gone = list(pods), set(gone)
    objects = dict(cluster.objects)
    objects.update(replaced or {})
    versions = [cluster.objects[key] for key in gone if key in cluster.objects]
    added = []
    for pod in pods:
        if pod.key in objects:
            versions.append(objects[pod.key])
            objects[pod.key] = pod  # where it was
        else:
            added.append(pod)
        versions.append(pod)
    for key in gone:
        objects.pop(key, None)
    namespaces = {pod.namespace for pod in versions}
    # the namespaces' pods as they are now, and the nodes
    index = cluster.index
    ns_pods = {}
    for namespace in namespaces:
        now = dict(index.of("Pod", namespace))
        for key in gone:
            now.pop(key, None)
        now.update((pod.key, pod) for pod in pods if pod.namespace == namespace)
        ns_pods[namespace] = list(now.values())
    node_objects = _node_objects(cluster)
    owned_by = workloads.active_by_owner(pod for pods in ns_pods.values() for pod in pods)
    owners = {(ref.get("kind"), pod.namespace, ref.get("name")) for pod in versions
              if (ref := fields.controller_of(pod))}
    deployments = set()
    for kind, namespace, name in owners:
        workload = objects.get((kind, namespace, name))
        if workload is None or kind not in ("ReplicaSet", "StatefulSet", "DaemonSet"):
            continue
        workload = objects[workload.key] = _restatused(workload, replaced)
        workloads.fill_owner_status(workload, owned_by[(kind, namespace, name)])
        ref = fields.controller_of(workload)
        if kind == "ReplicaSet" and ref and ref.get("kind") == "Deployment":
            deployments.add(("Deployment", namespace, ref.get("name")))
    for key in deployments:
        deployment = objects.get(key)
        if deployment is None:
            continue
        sets = [o for o in index.of("ReplicaSet", key[1]).values()
                if (ref := fields.controller_of(o)) and ref.get("kind") == "Deployment" and ref.get("name") == key[2]]
        deployment = objects[key] = _restatused(deployment, replaced)
        workloads.fill_workload_status(deployment, [p for rs in sets for p in owned_by[("ReplicaSet", key[1], rs.name)]])
    # the Services that select a pod changed, before or after
    blocks: dict[Key, list[KubeObject]] = {}
    controllers = {}
    for svc in [o for namespace in sorted(namespaces) for o in index.of("Service", namespace).values()]:
        selector = svc.spec.get("selector")
        if svc.spec.get("type") == "ExternalName" or not selector:
            continue
        chosen = selectors.from_set(selector)
        if not any(pod.namespace == svc.namespace and chosen.matches(pod.labels) for pod in versions):
            continue
        if svc.namespace not in controllers:  # compute's order: by name within the namespace
            controllers[svc.namespace] = EndpointsController(sorted(ns_pods[svc.namespace], key=lambda p: p.name),
                                                             node_objects)
        slices = controllers[svc.namespace].slices_for(svc)
        for obj in slices:
            system.stamp_uid(obj)
        made = controllers[svc.namespace].endpoints_for(svc, slices)
        system.stamp_uid(made)
        blocks[svc.key] = [*slices, made]
    laid = _laid_out(cluster, objects, added, blocks, gone)
    if laid is not None:  # what this touched and removed: the index, the ClusterChange follow
        touched = {*(pod.key for pod in versions), *(replaced or ()), *owners,
                   *deployments, *(o.key for block in blocks.values() for o in block)}
        return _made(cluster, laid, touched, gone)
    rebuilt = _rebuilt(objects, added, blocks)
    return None if rebuilt is None else replace(cluster, objects=rebuilt, warnings=list(cluster.warnings))


def _node_objects(cluster: Cluster) -> list[KubeObject]:
    """The Node objects, in compute's order (that of cluster.nodes)."""
    nodes = cluster.index.of("Node")
    return [nodes[key] for n in cluster.nodes if (key := ("Node", "", n.name)) in nodes]


def _restatused(workload: KubeObject, replaced: Mapping[Key, KubeObject] | None) -> KubeObject:
    """A workload whose status is about to be made again: a copy (computed objects are shared,
    never changed), unless it is a new one of `replaced`."""
    if replaced and replaced.get(workload.key) is workload:
        return workload
    return KubeObject(workload.kind, workload.namespace, workload.name, dict(workload.body), workload.source)


def running_again(body: dict, cluster: Cluster, live_readiness: Callable[[KubeObject], bool | None]) -> KubeObject | None:
    """A running pod's body (as it runs, or marked deleted) as compute makes it again with the
    pod carried over: its spec defaulted, its status made on its node and with its address,
    ready by kubelet's word. None if it has no node or address of this cluster."""
    pod = KubeObject("Pod", body["metadata"]["namespace"], body["metadata"]["name"], json.loads(json.dumps(body)))
    apply_pod_spec_defaults(pod.body.setdefault("spec", {}))
    info = cluster.node(pod.spec.get("nodeName"))
    address = str(info.ip) if info is not None and pod.spec.get("hostNetwork") else fields.pod_ip(pod)
    if info is None or not address or fields.is_terminal(pod):
        return None
    system.stamp_uid(pod)
    set_running(pod, info, address, live_readiness)
    return pod


def names_hold(cluster: Cluster, rs: KubeObject) -> bool:
    """Whether the ReplicaSet `rs` has its replicas under the first names it gives (as compute
    would name them again): nothing for it to make or rename."""
    mine, names = _replicas_and_names(rs, list(cluster.index.of("Pod", rs.namespace).values()))
    wanted = workloads.replicas_of(rs)
    return len(mine) == wanted and {p.name for p in mine} == {next(names) for _ in range(wanted)}


def _replicas_and_names(rs: KubeObject, ns_pods: list[KubeObject]) -> tuple[list[KubeObject], Iterator[str]]:
    """The ReplicaSet's replicas among its namespace's pods (a pod finished or being deleted is
    none, as compute's claim leaves it, but keeps its name) and the names it gives, in order."""
    mine = workloads.active_by_owner(ns_pods)[("ReplicaSet", rs.namespace, rs.name)]
    ids = {id(p) for p in mine}
    return mine, workloads.replica_names(rs, {p.name for p in ns_pods if id(p) not in ids})


def _laid_out(cluster: Cluster, objects: dict[Key, KubeObject], pods: list[KubeObject],
              blocks: Mapping[Key, list[KubeObject]], gone: set[Key]) -> dict[Key, KubeObject] | None:
    """What _rebuilt makes, without a pass over every object, when the change allows it: each
    block has the keys of the one it replaces (the Service's Endpoints and at most one slice:
    replaced in place), and the pods are one run in key order (new ones merged into it).
    `objects`: `cluster`'s (a copy, changed here), with the pods replaced in place and those of
    `gone` removed. None: ask _rebuilt."""
    index = cluster.index
    for service, block in blocks.items():
        namespace, name = service[1], service[2]
        before = [key for key, s in index.of("EndpointSlice", namespace).items()
                  if s.labels.get(endpoints_module.SERVICE_NAME) == name
                  and s.labels.get(endpoints_module.MANAGED_BY) == endpoints_module.SLICE_CONTROLLER]
        if ("Endpoints", namespace, name) in objects:
            before.append(("Endpoints", namespace, name))
        if len(before) > 2 or [o.key for o in block] != before:
            return None
    if pods:
        # the pods left, in key order
        run = [key for key in index.pod_keys if key not in gone] if gone else list(index.pod_keys)
        start = operator.indexOf(objects, run[0]) if run else -1  # (C loops: no list of every key)
        if start < 0 or list(islice(objects, start, start + len(run))) != run:
            return None
        parts, at = [], 0  # the objects in runs between the new pods' places
        for pod in sorted(pods, key=lambda p: p.key):
            place = start + bisect.bisect_left(run, pod.key)
            parts += [islice(objects.items(), at, place), ((pod.key, pod),)]
            at = place
        objects = dict(chain(*parts, islice(objects.items(), at, None)))
    for block in blocks.values():
        objects.update((o.key, o) for o in block)  # where the old ones were
    return objects


def _rebuilt(objects: dict[Key, KubeObject], pods: list[KubeObject],
             blocks: Mapping[Key, list[KubeObject]]) -> dict[Key, KubeObject] | None:
    """`objects` with `pods` among the pods, in compute's (namespace, name) order, and each
    Service's controller-written EndpointSlices and Endpoints (compute adds them together,
    after the Service's other slices) replaced by its block."""
    items = list(objects.items())
    pod_at = [i for i, (key, _) in enumerate(items) if key[0] == "Pod"]  # one run: compute adds them together
    inserts: dict[int, list[tuple[Key, KubeObject]]] = defaultdict(list)  # before index -> items
    pod_keys = [items[i][0] for i in pod_at]
    for pod in pods:
        at = bisect.bisect_left(pod_keys, pod.key)
        inserts[pod_at[at] if at < len(pod_at) else pod_at[-1] + 1].append((pod.key, pod))
    dropped, emitted = set(), set()
    for index, (key, obj) in enumerate(items):
        if key[0] == "Endpoints":
            service = ("Service", key[1], key[2])
        elif key[0] == "EndpointSlice" and \
                obj.labels.get(endpoints_module.MANAGED_BY) == endpoints_module.SLICE_CONTROLLER:
            service = ("Service", key[1], obj.labels.get(endpoints_module.SERVICE_NAME, ""))
        else:
            continue
        if service in blocks:
            if service not in emitted:  # the new block where the old one began
                emitted.add(service)
                inserts[index] += [(o.key, o) for o in blocks[service]]
            dropped.add(index)
    out: list[tuple[Key, KubeObject]] = []
    for index, item in enumerate(items):
        out += inserts.pop(index, ())
        if index not in dropped:
            out.append(item)
    out += inserts.pop(len(items), ())
    if inserts or emitted != set(blocks):
        return None  # not laid out as compute lays them out: it is asked instead
    return dict(out)

