"""Discovery: what kubectl asks first (/version, /api, /apis), in both shapes it understands —
the aggregated APIGroupDiscoveryList (apidiscovery.k8s.io/v2, one request for everything) when
its Accept header asks for it, else the legacy APIVersions / APIGroupList / APIResourceList,
which kubectl falls back to.
"""

from __future__ import annotations

import platform
from typing import Any

from podnet.apiserver.registry import Resource, groups, in_group_version

KUBERNETES_VERSION = "v1.32.4"  # what /version reports: the kubectl this project is tested with
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def version() -> dict[str, Any]:
    major, minor, _ = KUBERNETES_VERSION.lstrip("v").split(".")
    return {"major": major, "minor": minor, "gitVersion": f"{KUBERNETES_VERSION}+podnet",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": f"python{platform.python_version()}", "compiler": "podnet",
            "platform": f"linux/{platform.machine()}"}


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept.replace(" ", "") and "v=v2" in accept.replace(" ", "")


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(name, versions) for name, versions in groups().items() if name]}


def api_group(name: str) -> dict[str, Any] | None:
    versions = groups().get(name)
    if not name or versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(name, versions)}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    served = in_group_version(group, version)
    if not served:
        return None
    resources = []
    for r in served:
        resources.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                          "verbs": list(r.verbs), **({"shortNames": list(r.short_names)} if r.short_names else {}),
                          **({"categories": ["all"]} if r.kind in _ALL else {})})
        for sub in r.subresources:
            resources.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                              "kind": _SUB_KIND.get(sub, r.kind), "verbs": _SUB_VERBS.get(sub, ["get", "patch", "update"])})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


_ALL = {"Pod", "Service", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"}  # `kubectl get all`
_SUB_KIND = {"scale": "Scale", "log": "Pod", "exec": "PodExecOptions", "attach": "PodAttachOptions",
             "portforward": "PodPortForwardOptions", "proxy": "PodProxyOptions", "eviction": "Eviction",
             "binding": "Binding", "token": "TokenRequest"}
_SUB_VERBS = {"log": ["get"], "exec": ["create", "get"], "attach": ["create", "get"], "portforward": ["create", "get"],
              "proxy": ["create", "delete", "get", "patch", "update"], "eviction": ["create"], "binding": ["create"],
              "token": ["create"], "finalize": ["update"]}


def _aggregated_resource(r: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": r.plural, "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                             "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular,
                             "verbs": list(r.verbs)}
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.kind in _ALL:
        entry["categories"] = ["all"]
    if r.subresources:
        entry["subresources"] = [
            {"subresource": sub, "responseKind": {"group": "autoscaling" if sub == "scale" else r.group,
                                                  "version": "v1" if sub == "scale" else r.version,
                                                  "kind": _SUB_KIND.get(sub, r.kind)},
             "verbs": _SUB_VERBS.get(sub, ["get", "patch", "update"])} for sub in r.subresources]
    return entry


def aggregated(core: bool) -> dict[str, Any]:
    """/api (core: the "" group alone) or /apis (every named group) as APIGroupDiscoveryList."""
    items = []
    for name, versions in groups().items():
        if (name == "") != core:
            continue
        items.append({"metadata": {"name": name, "creationTimestamp": None},
                      "versions": [{"version": v, "freshness": "Current",
                                    "resources": [_aggregated_resource(r) for r in in_group_version(name, v)]}
                                   for v in versions]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}
