"""EndpointSlices (and legacy Endpoints), as the endpoint controllers write them.

For a Service with a selector: every pod of its namespace that matches and has an IP becomes
an endpoint, with ready/serving/terminating conditions. A named targetPort is resolved per pod;
pods that resolve the Service's ports to the same numbers share slices (so a pod lacking the
name is simply absent from that port's slices), at most 100 endpoints a slice. Services
without a selector keep user-supplied Endpoints, mirrored into slices, or user EndpointSlices.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from podnet.api import fields
from podnet.api import labels as selectors
from podnet.controlplane.defaults import default
from podnet.api.objects import KubeObject, deterministic_uid
from podnet import naming
from podnet.controlplane.pods import find_named_port, serving_containers
from podnet.controlplane.workloads import owner_reference

MAX_ENDPOINTS_PER_SLICE = 100
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
MIRRORING_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
SERVICE_NAME = "kubernetes.io/service-name"
ZONE_LABEL = "topology.kubernetes.io/zone"


def resolve_ports(svc: KubeObject, pod: KubeObject) -> tuple[tuple[str, int, str, str | None], ...]:
    """(name, targetPort number, protocol, appProtocol) for each Service port this pod serves."""
    out = []
    for port in svc.spec.get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        protocol = fields.protocol(port)
        if isinstance(target, str):
            number = find_named_port(serving_containers(pod), target, protocol) if not target.isdigit() else int(target)
            if number is None:
                continue
        else:
            number = int(target)
        out.append((port.get("name") or "", number, protocol, port.get("appProtocol")))
    return tuple(out)


class EndpointsController:
    def __init__(self, pods: list[KubeObject], nodes: list[KubeObject]):
        self._pods_by_namespace: dict[str, list[KubeObject]] = defaultdict(list)
        for pod in pods:
            if fields.pod_ip(pod) and not fields.is_terminal(pod):
                self._pods_by_namespace[pod.namespace].append(pod)
        self._zones = {n.name: n.labels.get(ZONE_LABEL) for n in nodes}

    def selected_pods(self, svc: KubeObject) -> list[KubeObject]:
        selector = selectors.from_set(svc.spec.get("selector"))
        return [p for p in self._pods_by_namespace.get(svc.namespace, ()) if selector.matches(p.labels)]

    def slices_for(self, svc: KubeObject) -> list[KubeObject]:
        publish_not_ready = bool(svc.spec.get("publishNotReadyAddresses"))
        groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for pod in self.selected_pods(svc):
            # A pod serving none of the ports still gets an endpoint, in a slice without ports
            # (the upstream reconciler keys slices by the resolved port set, empty included).
            groups[resolve_ports(svc, pod)].append(self._endpoint(svc, pod, publish_not_ready))
        slices = []
        if not groups:  # the controller keeps one empty placeholder slice
            return [self._slice(svc, naming.generate_name(f"{svc.name}-", "placeholder"), None, [], SLICE_CONTROLLER)]
        for ports, endpoints in sorted(groups.items(), key=lambda item: item[0]):
            for start in range(0, max(len(endpoints), 1), MAX_ENDPOINTS_PER_SLICE):
                chunk = endpoints[start:start + MAX_ENDPOINTS_PER_SLICE]
                name = naming.generate_name(f"{svc.name}-", repr(ports), str(start))
                slices.append(self._slice(svc, name, ports, chunk, SLICE_CONTROLLER))
        return slices

    def _endpoint(self, svc: KubeObject, pod: KubeObject, publish_not_ready: bool) -> dict[str, Any]:
        terminating = fields.is_terminating(pod)
        ready = fields.is_ready(pod)
        endpoint: dict[str, Any] = {
            "addresses": [fields.pod_ip(pod)],
            "conditions": {
                "ready": publish_not_ready or (ready and not terminating),
                "serving": ready,
                "terminating": terminating,
            },
        }
        if pod.spec.get("hostname") and pod.spec.get("subdomain") == svc.name:
            endpoint["hostname"] = pod.spec["hostname"]
        endpoint["nodeName"] = pod.spec.get("nodeName")
        endpoint["targetRef"] = {"kind": "Pod", "namespace": pod.namespace, "name": pod.name,
                                 "uid": pod.metadata.get("uid") or deterministic_uid("Pod", pod.namespace, pod.name)}
        zone = self._zones.get(pod.spec.get("nodeName"))
        if zone:
            endpoint["zone"] = zone
        return endpoint

    @staticmethod
    def _slice(svc: KubeObject, name: str, ports: tuple | None, endpoints: list[dict[str, Any]], manager: str,
               owner: KubeObject | None = None, labels_from: KubeObject | None = None) -> KubeObject:
        labels = {k: v for k, v in (labels_from or svc).labels.items() if k not in (SERVICE_NAME, MANAGED_BY)}
        labels[SERVICE_NAME] = svc.name
        labels[MANAGED_BY] = manager
        if fields.is_headless(svc):
            labels["service.kubernetes.io/headless"] = ""
        body: dict[str, Any] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": svc.namespace,
                "generateName": f"{svc.name}-",
                "labels": labels,
                "uid": deterministic_uid("EndpointSlice", svc.namespace, name),
                "ownerReferences": [owner_reference(owner or svc)],
            },
            "addressType": "IPv4",
            "endpoints": endpoints or None,  # the API serves an empty list as null
        }
        if ports is None:
            body["ports"] = None  # the placeholder slice
        else:
            body["ports"] = []
            for port_name, number, protocol, app_protocol in ports:
                entry: dict[str, Any] = {"name": port_name, "port": number, "protocol": protocol}
                if app_protocol:
                    entry["appProtocol"] = app_protocol
                body["ports"].append(entry)
        return KubeObject("EndpointSlice", svc.namespace, name, body, svc.source)

    def endpoints_for(self, svc: KubeObject, slices: list[KubeObject]) -> KubeObject:
        """The legacy v1 Endpoints from the same selection (endpoints controller): ready and
        not-ready addresses per port set, subsets repacked so each port set appears once."""
        publish_not_ready = bool(svc.spec.get("publishNotReadyAddresses"))
        headless = fields.is_headless(svc)
        by_ports: dict[tuple, tuple[dict, dict]] = {}
        for slice_ in slices:
            ports = tuple((p["name"], p["port"], p["protocol"]) for p in slice_.body.get("ports") or [])
            if not ports and not headless:
                continue  # only headless Services publish addresses without ports
            ready_set, not_ready_set = by_ports.setdefault(ports, ({}, {}))
            for endpoint in slice_.body.get("endpoints") or []:
                conditions = endpoint["conditions"]
                if conditions["terminating"] and not publish_not_ready:
                    continue  # ShouldPodBeInEndpoints
                address = {"ip": endpoint["addresses"][0]}
                if endpoint.get("hostname"):
                    address["hostname"] = endpoint["hostname"]
                address["nodeName"] = endpoint.get("nodeName")
                address["targetRef"] = dict(endpoint["targetRef"])
                (ready_set if conditions["ready"] else not_ready_set)[address["ip"]] = address
        subsets = []
        for ports, (ready_set, not_ready_set) in sorted(by_ports.items()):
            subset: dict[str, Any] = {}
            if ready_set:
                subset["addresses"] = [ready_set[ip] for ip in sorted(ready_set, key=_ip_key)]
            if not_ready_set:
                subset["notReadyAddresses"] = [not_ready_set[ip] for ip in sorted(not_ready_set, key=_ip_key)]
            if subset:
                if ports:
                    subset["ports"] = [{"name": n, "port": p, "protocol": proto} if n else {"port": p, "protocol": proto}
                                       for n, p, proto in ports]
                subsets.append(subset)
        labels = dict(svc.labels)
        if headless:
            labels["service.kubernetes.io/headless"] = ""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": svc.name, "namespace": svc.namespace, "labels": labels,
                         "uid": deterministic_uid("Endpoints", svc.namespace, svc.name)},
        }
        if subsets:
            body["subsets"] = subsets
        return KubeObject("Endpoints", svc.namespace, svc.name, body, svc.source)


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ip.split(".")) if "." in ip else (0,)


def mirror_endpoints(svc: KubeObject, endpoints: KubeObject) -> list[KubeObject]:
    """The EndpointSlice mirroring controller: a selector-less Service's Endpoints as slices,
    owned by the Endpoints, labelled like it, with only the ready condition set."""
    slices = []
    for i, subset in enumerate(endpoints.body.get("subsets") or []):
        ports = tuple((p.get("name") or "", int(p["port"]), fields.protocol(p), p.get("appProtocol"))
                      for p in subset.get("ports") or [])
        items = []
        for ready, key in ((True, "addresses"), (False, "notReadyAddresses")):
            for address in subset.get(key) or []:
                endpoint: dict[str, Any] = {"addresses": [address["ip"]], "conditions": {"ready": ready}}
                for field in ("hostname", "nodeName", "targetRef"):
                    if address.get(field):
                        endpoint[field] = dict(address[field]) if isinstance(address[field], dict) else address[field]
                items.append(endpoint)
        name = naming.generate_name(f"{svc.name}-", "mirror", str(i))
        slices.append(EndpointsController._slice(svc, name, ports, items, MIRRORING_CONTROLLER,
                                                 owner=endpoints, labels_from=endpoints))
    return slices


def apply_slice_defaults(slice_: KubeObject) -> None:
    """The API server's defaults for a user's EndpointSlice (SetDefaults_EndpointPort): each
    port's name "" and protocol TCP — clients read them as set (`kubectl describe` does)."""
    for port in slice_.body.get("ports") or []:
        if isinstance(port, dict):
            default(port, "name", "")
            default(port, "protocol", "TCP")
