"""What the ingress controller tells about Ingresses as Kubernetes events (`describe ing`).

ingress-nginx records a Normal "Sync" event ("Scheduled for sync") on each Ingress it takes
up, whenever the Ingress changes. Its problems with an Ingress it mostly logs only; podnet
raises them as Warning events with the same reason, "Sync", on the Ingress they concern, so
`podnet describe ing` says why a path answers 503 or is left out:

- a backend Service that does not exist (ingress-nginx logs "Error obtaining Endpoints for
  Service" and answers 503);
- a location nginx cannot load (a bad regex) and the other route-table warnings that name an
  Ingress (podnet.semantics.ingress.IngressController.warnings);
- a TLS Secret nginx cannot use (missing, no tls.key …: certificates.problems) — on each
  Ingress whose spec.tls names it.

`ingress_events` computes them (pure); the controller posts each new one over the control
socket's `event` op (podnet.host.control), as ingress-nginx posts to the API server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from podnet.semantics.ingress import IngressController

COMPONENT = "nginx-ingress-controller"
_INGRESS_REF = re.compile(r"\bIngress ([A-Za-z0-9.-]+/[A-Za-z0-9.-]+)")
_SECRET_REF = re.compile(r"^Secret ([A-Za-z0-9.-]+)/([A-Za-z0-9.-]+)")


@dataclass(frozen=True)
class IngressEvent:
    namespace: str
    name: str
    type: str  # Normal or Warning
    reason: str
    message: str

    def request(self) -> dict:
        """The control socket's `event` request."""
        return {"op": "event", "component": COMPONENT, "type": self.type, "reason": self.reason,
                "message": self.message,
                "involvedObject": {"kind": "Ingress", "namespace": self.namespace, "name": self.name}}


def ingress_events(routes: IngressController, certificate_problems: list[str]) -> list[IngressEvent]:
    """The events of one sync: Sync for every Ingress served, then a Warning per problem."""
    ours = {i.ref: i for i in routes.ingresses}
    found: list[IngressEvent] = []

    def warn(ref: str, message: str) -> None:
        namespace, name = ref.split("/", 1)
        event = IngressEvent(namespace, name, "Warning", "Sync", message)
        if event not in found:
            found.append(event)

    for ingress in routes.ingresses:
        found.append(IngressEvent(ingress.namespace, ingress.name, "Normal", "Sync", "Scheduled for sync"))
    cluster = routes.cluster
    for route in routes.routes():
        if route.ingress not in ours:
            continue
        if route.service and cluster.get("Service", route.namespace or "", route.service) is None:
            warn(route.ingress, f"Service {route.namespace}/{route.service} does not exist: "
                                f"path {route.path} answers 503")
        if route.problem:
            warn(route.ingress, f"path {route.path}: {route.problem}; the location is left out")
    for warning in routes.warnings:
        for ref in dict.fromkeys(_INGRESS_REF.findall(warning)):
            if ref in ours:
                warn(ref, warning)
    for problem in certificate_problems:
        secret = _SECRET_REF.match(problem)
        if secret is None:
            continue
        namespace, name = secret.groups()
        for ingress in routes.ingresses:
            if ingress.namespace == namespace and any(t.get("secretName") == name for t in ingress.spec.get("tls") or []):
                warn(ingress.ref, problem)
    return found
