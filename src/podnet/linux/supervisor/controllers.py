"""What the cluster's controllers say about the objects a change made: their events.

The control plane computes the whole result of the controllers at once (workloads.py makes
the ReplicaSets and pods, the scheduler places them, services.py allocates LoadBalancer IPs);
this module looks at what changed between two computed clusters (apimeta.ApiMeta.observe) and
says it as each controller would:

- deployment-controller: ScalingReplicaSet "Scaled up/down replica set NAME from A to B";
- replicaset-controller / daemonset-controller / job-controller: SuccessfulCreate "Created pod: NAME",
  SuccessfulDelete "Deleted pod: NAME"; statefulset-controller: SuccessfulCreate / SuccessfulDelete
  "create (delete) Pod NAME in StatefulSet STS successful";
- default-scheduler: FailedScheduling with the scheduler's message (once per message);
- metallb-controller IPAllocated, service-controller EnsuringLoadBalancer/EnsuredLoadBalancer,
  when a LoadBalancer Service gets (another) address.

A deleted object's own events say nothing more here: kubelet's Killing is emitted where the
pod is stopped.
"""

from __future__ import annotations

from typing import Any

from podnet.api import fields
from podnet.controlplane import Cluster

Said = tuple[Any, str, str, str, str]  # (object, type, reason, message, component)


class ControllerEvents:
    def __init__(self):
        self.unscheduled: dict[str, str] = {}  # pod ref -> the FailedScheduling message last said
        self.load_balancers: dict[str, tuple[str, ...]] = {}  # Service ref -> the IPs last said
        self.replicas: dict[str, int] = {}  # ReplicaSet ref -> spec.replicas last seen
        self.deleting: set[str] = set()  # pod refs whose deletion was said when they began terminating

    def export(self) -> dict[str, Any]:
        """What was last said, for a restarted supervisor (record.py)."""
        return {"unscheduled": dict(self.unscheduled), "replicas": dict(self.replicas),
                "loadBalancers": {ref: list(ips) for ref, ips in self.load_balancers.items()},
                "deleting": sorted(self.deleting)}

    def restore(self, saved: dict[str, Any]) -> None:
        self.unscheduled, self.replicas = dict(saved["unscheduled"]), dict(saved["replicas"])
        self.load_balancers = {ref: tuple(ips) for ref, ips in saved["loadBalancers"].items()}
        self.deleting = set(saved["deleting"])

    def said(self, cluster: Cluster, changes: list[tuple[Any, str]]) -> list[Said]:
        out: list[Said] = []
        for obj, change in changes:
            if obj.kind == "Pod":
                out += self._pod(cluster, obj, change)
            elif change == "deleted":
                continue
            elif obj.kind == "ReplicaSet":
                out += self._replica_set(cluster, obj)
            elif obj.kind == "Service" and obj.spec.get("type") == "LoadBalancer":
                out += self._load_balancer(obj)
        # an object deleted and made again is news again
        for kind, known in (("Pod", self.unscheduled), ("Service", self.load_balancers), ("ReplicaSet", self.replicas)):
            for ref in [r for r in known if cluster.get(kind, *r.split("/", 1)) is None]:
                del known[ref]
        return out

    def _pod(self, cluster: Cluster, pod, change: str) -> list[Said]:
        out: list[Said] = []
        owner = fields.controller_of(pod)
        # the controller deletes a pod when it decides to: the pod then terminates, and its
        # SuccessfulDelete is said as it begins to (once), not when it is finally gone
        if change == "deleted" and pod.ref in self.deleting:
            self.deleting.discard(pod.ref)
            change = "said"
        elif change != "deleted" and fields.is_terminating(pod):
            change = "said" if pod.ref in self.deleting else "deleted"
            self.deleting.add(pod.ref)
        if change in ("added", "deleted") and owner is not None:
            parent = cluster.get(owner.get("kind", ""), pod.namespace, owner.get("name", ""))
            reason, verb = ("SuccessfulCreate", "create") if change == "added" else ("SuccessfulDelete", "delete")
            if parent is not None and parent.kind == "StatefulSet":
                out.append((parent, "Normal", reason,
                            f"{verb} Pod {pod.name} in StatefulSet {parent.name} successful", "statefulset-controller"))
            elif parent is not None and parent.kind in ("ReplicaSet", "DaemonSet", "Job"):
                out.append((parent, "Normal", reason, f"{verb.capitalize()}d pod: {pod.name}",
                            f"{parent.kind.lower()}-controller"))
        if change not in ("deleted", "said") and not pod.spec.get("nodeName"):
            message = next((c.get("message") for c in fields.conditions(pod)
                            if c.get("type") == "PodScheduled" and c.get("status") == "False"), None)
            if message and self.unscheduled.get(pod.ref) != message:
                self.unscheduled[pod.ref] = message
                out.append((pod, "Warning", "FailedScheduling", message, "default-scheduler"))
        return out

    def _replica_set(self, cluster: Cluster, replica_set) -> list[Said]:
        replicas = int(replica_set.spec.get("replicas", 1) or 0)
        before = self.replicas.get(replica_set.ref, 0)
        self.replicas[replica_set.ref] = replicas
        owner = fields.controller_of(replica_set)
        deployment = cluster.get("Deployment", replica_set.namespace, owner.get("name", "")) if owner else None
        if deployment is None or replicas == before:
            return []
        direction = "up" if replicas > before else "down"
        return [(deployment, "Normal", "ScalingReplicaSet",
                 f"Scaled {direction} replica set {replica_set.name} from {before} to {replicas}", "deployment-controller")]

    def _load_balancer(self, service) -> list[Said]:
        ips = tuple(i.get("ip") or i.get("hostname") or "" for i in
                    (service.status.get("loadBalancer") or {}).get("ingress") or [])
        if not ips or self.load_balancers.get(service.ref) == ips:
            return []
        self.load_balancers[service.ref] = ips
        listed = ", ".join(f'"{ip}"' for ip in ips)
        return [(service, "Normal", "IPAllocated", f"Assigned IP [{listed}]", "metallb-controller"),
                (service, "Normal", "EnsuringLoadBalancer", "Ensuring load balancer", "service-controller"),
                (service, "Normal", "EnsuredLoadBalancer", "Ensured load balancer", "service-controller")]
