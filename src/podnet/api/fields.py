"""Typed readers of the object fields many layers read, with the API's defaults in one place.

Each reader takes an object (or one entry of a `ports` list), never changes it, and answers the
way the API server would have filled the field in: a port without `protocol` is TCP, a Service
whose clusterIP is "None" is headless and has no cluster IP, an absent status has no conditions.
Code that writes a status uses `KubeObject.status_for_update()`, not these.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from podnet.api.objects import KubeObject

# ---------------------------------------------------------------- ports

DEFAULT_PROTOCOL = "TCP"  # of Service, container, EndpointSlice and NetworkPolicy ports alike


def protocol(port: Mapping[str, Any]) -> str:
    """A port's protocol, TCP when unset (the API server's default for every kind of port)."""
    return port.get("protocol") or DEFAULT_PROTOCOL


# ---------------------------------------------------------------- Services

HEADLESS = "None"  # spec.clusterIP of a headless Service


def is_headless(svc: KubeObject) -> bool:
    return svc.spec.get("clusterIP") == HEADLESS


def cluster_ip(svc: KubeObject) -> str:
    """spec.clusterIP, or "" when the Service has none (unallocated, headless or ExternalName)."""
    ip = svc.spec.get("clusterIP")
    return ip if ip and ip != HEADLESS else ""


def cluster_ips(svc: KubeObject) -> list[str]:
    """spec.clusterIPs (spec.clusterIP when only that is set), without the headless marker."""
    return [ip for ip in svc.spec.get("clusterIPs") or [svc.spec.get("clusterIP")] if ip and ip != HEADLESS]


def load_balancer_ingress(obj: KubeObject) -> list[Mapping[str, Any]]:
    """status.loadBalancer.ingress of a Service or an Ingress."""
    return (obj.status.get("loadBalancer") or {}).get("ingress") or []


def load_balancer_ips(obj: KubeObject) -> list[str]:
    """The IP addresses in status.loadBalancer.ingress (entries with only a hostname are left out)."""
    return [i["ip"] for i in load_balancer_ingress(obj) if i.get("ip")]


def load_balancer_addresses(obj: KubeObject) -> list[str]:
    """What kubectl shows of status.loadBalancer.ingress: each entry's IP, else its hostname."""
    return [address for i in load_balancer_ingress(obj) if (address := i.get("ip") or i.get("hostname"))]


# ---------------------------------------------------------------- Pods

TERMINAL_PHASES = ("Succeeded", "Failed")


def phase(obj: KubeObject) -> str:
    """status.phase, "" when unset."""
    return obj.status.get("phase") or ""


def is_terminal(pod: KubeObject) -> bool:
    """The pod has finished (Succeeded or Failed): it holds no IP and serves nothing."""
    return phase(pod) in TERMINAL_PHASES


def is_terminating(obj: KubeObject) -> bool:
    """metadata.deletionTimestamp is set: the object is being deleted."""
    return bool(obj.metadata.get("deletionTimestamp"))


def controller_of(obj: KubeObject) -> Mapping[str, Any] | None:
    """The ownerReference with controller: true (the ReplicaSet of a pod, …), None when none is."""
    return next((ref for ref in obj.metadata.get("ownerReferences") or [] if ref.get("controller")), None)


def pod_ip(pod: KubeObject) -> str:
    """status.podIP, "" when the pod has none yet."""
    return pod.status.get("podIP") or ""


def pod_ips(pod: KubeObject) -> list[str]:
    """The addresses of status.podIPs."""
    return [entry["ip"] for entry in pod.status.get("podIPs") or []]


def host_ip(pod: KubeObject) -> str:
    """status.hostIP, "" when unset."""
    return pod.status.get("hostIP") or ""


# ---------------------------------------------------------------- conditions (Pods, Nodes)


def conditions(obj: KubeObject) -> list[Mapping[str, Any]]:
    """status.conditions, in their order."""
    return obj.status.get("conditions") or []


def condition_statuses(obj: KubeObject) -> dict[str, str]:
    """{type: status} of status.conditions ("True", "False" or "Unknown")."""
    return {c.get("type"): c.get("status") for c in conditions(obj)}


def condition(obj: KubeObject, kind: str) -> Mapping[str, Any] | None:
    """The first condition of type `kind`, None when there is none."""
    return next((c for c in conditions(obj) if c.get("type") == kind), None)


def is_ready(obj: KubeObject) -> bool:
    """The Ready condition is True (a Pod or a Node); without one, not ready."""
    ready = condition(obj, "Ready")
    return ready is not None and ready.get("status") == "True"


# ---------------------------------------------------------------- EndpointSlice endpoints
# The API leaves a condition unset when it is unknown, and consumers read unset as ready.


def endpoint_ready(endpoint: Mapping[str, Any]) -> bool:
    """conditions.ready of one EndpointSlice endpoint; only an explicit false is not ready."""
    return (endpoint.get("conditions") or {}).get("ready") is not False


def endpoint_serving(endpoint: Mapping[str, Any]) -> bool:
    """conditions.serving, which is ready when unset; only an explicit false is not serving."""
    return (endpoint.get("conditions") or {}).get("serving", endpoint_ready(endpoint)) is not False


def endpoint_terminating(endpoint: Mapping[str, Any]) -> bool:
    return bool((endpoint.get("conditions") or {}).get("terminating"))


# ---------------------------------------------------------------- Nodes


def node_addresses(node: KubeObject) -> dict[str, str]:
    """{type: address} of status.addresses (InternalIP, ExternalIP, Hostname); the first of a type."""
    out: dict[str, str] = {}
    for entry in node.status.get("addresses") or []:
        out.setdefault(entry.get("type"), entry.get("address"))
    return out


# ---------------------------------------------------------------- container images

def image_name(image: str) -> str:
    """An image reference's last path element without tag or digest:
    registry.k8s.io/e2e-test-images/agnhost:2.53 -> agnhost."""
    name = image.rsplit("/", 1)[-1]
    return re.split(r"[:@]", name, maxsplit=1)[0]


# ---------------------------------------------------------------- Secrets

def secret_keys(secret: Mapping[str, Any]) -> list[str]:
    """A Secret body's keys: those of `data` and of `stringData`."""
    return list(dict.fromkeys([*(secret.get("data") or {}), *(secret.get("stringData") or {})]))


def secret_value(secret: Mapping[str, Any], key: str) -> bytes | None:
    """One value of a Secret body as the API server stores it: `stringData` written over `data`
    (base64); None when the Secret has no such key. ValueError when `data`'s is not base64."""
    plain = secret.get("stringData") or {}
    if key in plain:
        return b"" if plain[key] is None else str(plain[key]).encode()
    data = secret.get("data") or {}
    if key not in data:
        return None
    try:
        return base64.b64decode(str(data[key] or ""), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"data.{key} is not base64") from None
