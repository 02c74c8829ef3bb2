"""Events of the running cluster: core/v1 Event objects, as kubelet and the controllers emit them.

A bounded store (the newest MAX_EVENTS; the API server too lets events go, after an hour).
A repeated event — same object, type, reason, message and source — is aggregated as client-go's
event correlator does: its `count` goes up and `lastTimestamp` moves, `firstTimestamp` stays.
Every recorded or aggregated event takes the next value of a counter as its resourceVersion,
so `podnet get events -w` asks for what came after the last one it printed.

Who emits what (podnet's components in the role of Kubernetes'):

- default-scheduler: Scheduled ("Successfully assigned ns/pod to node") when a pod is first
  started, FailedScheduling with the scheduler's message when a pod is left unscheduled;
- kubelet: Pulled ("Container image … already present on machine" — podnet pulls no images,
  the message kubelet gives an image it has), Created, Started, Failed ("Error: configmap "x"
  not found": a container whose config kubelet cannot make is not created, it waits as
  CreateContainerConfigError; Created and Started follow once it can), InvalidEnvironmentVariableNames
  (envFrom keys left out, about the pod), Unhealthy (the probe's message), Killing (failed
  liveness), BackOff (a crashed container waits to restart), SandboxChanged (a node reboot;
  the Node itself gets Starting and Rebooted). kubelet's Pulling, Failed/ErrImagePull and
  FailedMount are never emitted: podnet has no registry and no volumes;
- service-controller: EnsuringLoadBalancer / EnsuredLoadBalancer, and the IP allocator's
  IPAllocated (MetalLB's reason), when a LoadBalancer Service gets its address; the workload
  controllers' ScalingReplicaSet and SuccessfulCreate (controllers.py says what each says);
- kube-proxy: SyncProxyRulesFailed on a Node whose kernel refused a sync (the previous rules
  stay in force; it retries), SyncProxyRulesRecovered once a sync holds again, ProxyRulesChanged
  (a Warning) when its canary finds its rules changed outside it and it syncs them all again;
- kube-network-policies (the NetworkPolicy tables' syncer, in the role of the sigs project that
  enforces NetworkPolicy with nftables per node): NetworkPolicyRulesChanged, likewise;
- nginx-ingress-controller: whatever the controller posts over the control socket (`event`
  op): Sync on success, Warnings for what it could not serve.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from podnet.errors import PodnetError

MAX_EVENTS = 1000
COMPONENTS = ("kubelet", "default-scheduler", "service-controller", "nginx-ingress-controller",
              "metallb-controller", "deployment-controller", "replicaset-controller", "statefulset-controller",
              "daemonset-controller")


def timestamp(seconds: float | None = None) -> str:
    """The API server's time format (RFC 3339, seconds, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if seconds is None else seconds))


def _key(involved: dict[str, Any], type_: str, reason: str, message: str, component: str) -> tuple:
    """What makes a repeated event the same one (client-go's aggregation key): the object, by
    uid too (a pod made again under its name is another object), and what was said by whom."""
    return (involved.get("kind"), involved.get("namespace") or "", involved.get("name"), involved.get("uid") or "",
            involved.get("fieldPath") or "", type_, reason, message, component)


class EventStore:
    def __init__(self, limit: int = MAX_EVENTS, clock=time.time):
        self.limit, self.clock = limit, clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # `wait`: a watcher's long poll
        self._events: OrderedDict[tuple, dict[str, Any]] = OrderedDict()  # oldest change first
        self._version = 0
        self._last_stamp = 0

    def _stamp(self) -> int:
        """The clock in nanoseconds, never the same twice: an event's name ends with it in hex,
        as client-go's recorder names events, so that listing by name (the API server's order)
        lists them as they happened — `describe` prints the events of one second in list order."""
        self._last_stamp = max(int(self.clock() * 1e9), self._last_stamp + 1)
        return self._last_stamp

    def record(self, involved: dict[str, Any], type_: str, reason: str, message: str, component: str,
               host: str | None = None) -> dict[str, Any]:
        """Record one event about `involved` (kind, namespace, name, uid, apiVersion, fieldPath);
        the same event again counts up. Returns the event."""
        if type_ not in ("Normal", "Warning"):
            raise ValueError(f"event type must be Normal or Warning, not {type_!r}")
        key = _key(involved, type_, reason, message, component)
        now = timestamp(self.clock())
        with self._lock:
            self._version += 1
            event = self._events.pop(key, None)
            if event is None:
                namespace = involved.get("namespace") or "default"
                event = {"apiVersion": "v1", "kind": "Event",
                         "metadata": {"name": f"{involved.get('name')}.{self._stamp():x}",
                                      "namespace": namespace, "uid": str(uuid.uuid4()),
                                      "creationTimestamp": now},
                         "involvedObject": {k: v for k, v in involved.items() if v},
                         "reason": reason, "message": message, "type": type_,
                         "source": {"component": component, **({"host": host} if host else {})},
                         "count": 0, "firstTimestamp": now, "reportingComponent": component}
            event["count"] += 1
            event["lastTimestamp"] = now
            event["metadata"]["resourceVersion"] = str(self._version)
            self._events[key] = event
            while len(self._events) > self.limit:
                self._events.popitem(last=False)
            self._changed.notify_all()
            return event

    def wait(self, since: int, timeout: float) -> None:
        """Until an event changed after resourceVersion `since`, or `timeout` seconds went by
        (`podnet get events -w`: a long poll, as a Kubernetes watch is)."""
        with self._changed:
            self._changed.wait_for(lambda: self._version > since, timeout)

    def list(self, since: int = 0) -> list[dict[str, Any]]:
        """Copies of the events, oldest change first; `since`: only those changed after that
        resourceVersion."""
        with self._lock:
            return [{**e, "metadata": dict(e["metadata"])} for e in self._events.values()
                    if int(e["metadata"]["resourceVersion"]) > since]

    @property
    def version(self) -> int:
        return self._version

    def export(self) -> dict[str, Any]:
        """The store as a restarted supervisor takes it over (record.py: events.json)."""
        with self._lock:
            return {"version": self._version, "events": list(self._events.values())}

    def restore(self, saved: dict[str, Any]) -> None:
        """What `export` gave: the same events, and resourceVersions going on from where they were."""
        with self._lock:
            self._version = int(saved["version"])
            self._events = OrderedDict()
            for event in saved["events"]:
                about = event["involvedObject"]
                key = _key(about, event["type"], event["reason"], event["message"], event["source"]["component"])
                self._events[key] = event


def involved(obj) -> dict[str, Any]:
    """The involvedObject of an event about a KubeObject."""
    return {"kind": obj.kind, "namespace": obj.namespace or "", "name": obj.name,
            "uid": obj.metadata.get("uid"), "apiVersion": obj.body.get("apiVersion")}


def posted_event(store: EventStore, cluster, message: dict[str, Any]) -> dict[str, Any]:
    """Record the event a controller posted (the control socket's `event` op): about an object
    of `cluster`, from one of COMPONENTS; a bad request is one PodnetError."""
    about = message.get("involvedObject") or {}
    kind, namespace, name = about.get("kind"), about.get("namespace") or "", about.get("name")
    component = message.get("component")
    if component not in COMPONENTS:
        raise PodnetError(f"event: unknown source component {component!r}")
    obj = cluster.get(kind or "", namespace, name or "")
    if obj is None:
        raise PodnetError(f"event: {kind} {namespace}/{name} not found")
    try:
        return store.record(involved(obj), message.get("type") or "Normal", str(message.get("reason") or ""),
                            str(message.get("message") or ""), component)
    except ValueError as exc:
        raise PodnetError(f"event: {exc}") from None
