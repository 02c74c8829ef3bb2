"""What a request asks for, read from its method, path and query as kube-apiserver's
RequestInfoFactory reads them: a resource request (group, version, resource, namespace, name,
subresource, and the verb RBAC checks: get, list, watch, create, update, patch, delete,
deletecollection) or a non-resource one (/version, /healthz, /openapi/v3 …).

    /api/v1/namespaces/NS/pods/NAME/log      -> core v1 pods NS NAME log, get
    /apis/apps/v1/deployments?watch=true     -> apps v1 deployments (all namespaces), watch
    /api/v1/namespaces/NS                    -> core v1 namespaces NAME=NS
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

_NAMESPACE_SUBRESOURCES = {"status", "finalize"}  # of the namespace object, not resources in it
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "get", "HEAD": "get"}


@dataclass(frozen=True)
class RequestInfo:
    resource_request: bool
    path: str
    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""


def request_info(method: str, path: str, query: dict[str, str]) -> RequestInfo:
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    verb = _METHOD_VERBS.get(method, method.lower())
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[1:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[2:]
    else:
        return RequestInfo(False, path, verb)
    version, rest = rest[0], rest[1:]
    if not rest:  # /api/v1, /apis/apps/v1: discovery
        return RequestInfo(False, path, verb)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:  # /namespaces/NS/RESOURCE...
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if verb == "get" and not name:
        verb = "watch" if query.get("watch") in ("1", "true") else "list"
    elif verb == "get" and query.get("watch") in ("1", "true"):
        verb = "watch"
    elif verb == "delete" and not name:
        verb = "deletecollection"
    return RequestInfo(True, path, verb, group, version, resource, namespace, name, subresource)
