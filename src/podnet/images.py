"""Container images as behaviours: what a known image listens on, from its command and args.

No registry is reachable, so podnet runs known images as built-in behaviours (DESIGN.md).
This module is the shared knowledge of what each one serves, used by the simulator to say
whether anything answers on a port, and by the data plane to start the right process.
Flags and defaults are those of the upstream images (agnhost: kubernetes/test/images/agnhost).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from podnet.agnhost.ports import listens
from podnet.api import fields

AGNHOST = "agnhost"


@dataclass(frozen=True)
class Behaviour:
    image: str  # "agnhost netexec", "nginx", … or "" when unknown
    listens: frozenset[tuple[int, str]] = field(default_factory=frozenset)  # (port, protocol)
    known: bool = True

    def serves(self, port: int, protocol: str) -> bool:
        return (port, protocol) in self.listens


def _image_name(image: str) -> str:
    """registry.k8s.io/e2e-test-images/agnhost:2.53 -> agnhost"""
    name = image.rsplit("/", 1)[-1]
    return re.split(r"[:@]", name, maxsplit=1)[0]


# podnet.ingressnginx's nginx: HTTP, HTTPS and the controller's health port (no admission webhook)
INGRESS_NGINX_PORTS = frozenset({(80, "TCP"), (443, "TCP"), (10254, "TCP")})


def is_ingress_nginx(image: str) -> bool:
    """ingress-nginx's controller image, current (registry.k8s.io/ingress-nginx/controller) or
    as the old manifests name it (quay.io/kubernetes-ingress-controller/nginx-ingress-controller)."""
    name = _image_name(image)
    return (name == "controller" and "ingress-nginx/" in image) or name == "nginx-ingress-controller"


def _agnhost(words: list[str], env: dict[str, str]) -> Behaviour:
    if not words:
        return Behaviour("agnhost", frozenset())  # prints its help and exits
    # The container runs podnet.agnhost; ask its own command-line parser what that argv serves,
    # so the simulator and the running pod cannot disagree (flag syntax, defaults, env ports).

    sub, ports = listens(words, env)
    return Behaviour(f"agnhost {sub or words[0]}", ports)


def behaviour_of(container: dict[str, Any]) -> Behaviour:
    name = _image_name(str(container.get("image") or ""))
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    env = {e.get("name"): str(e.get("value", "")) for e in container.get("env") or [] if isinstance(e, dict)}
    if name == AGNHOST:
        words = (command[1:] if command and command[0].endswith("agnhost") else command) + args
        return _agnhost(words, env)
    if name == "pause":
        return Behaviour("pause", frozenset())
    if name in ("nginx", "nginx-unprivileged"):
        return Behaviour("nginx", frozenset({(80, "TCP")}))
    if is_ingress_nginx(str(container.get("image") or "")):
        return Behaviour("ingress-nginx", INGRESS_NGINX_PORTS)
    if name == "coredns":
        return Behaviour("coredns", frozenset({(53, "UDP"), (53, "TCP"), (9153, "TCP"), (8080, "TCP"), (8181, "TCP")}))
    return Behaviour(name, frozenset(), known=False)


@dataclass(frozen=True)
class ServingAnswer:
    serving: bool | None  # None: cannot tell (unknown image, port not declared)
    detail: str


def serving(pod_spec: dict[str, Any], port: int, protocol: str) -> ServingAnswer:
    """Is something in the pod listening on port/protocol?"""
    declared = []
    for container in pod_spec.get("containers") or []:
        behaviour = behaviour_of(container)
        ports = [(int(p["containerPort"]), fields.protocol(p)) for p in container.get("ports") or []]
        declared += ports
        if behaviour.known:
            if behaviour.serves(port, protocol):
                return ServingAnswer(True, f"{behaviour.image} in container {container.get('name')} listens on {port}/{protocol}")
        elif (port, protocol) in ports:
            return ServingAnswer(True, f"container {container.get('name')} declares containerPort {port}/{protocol}")
    if all(behaviour_of(c).known for c in pod_spec.get("containers") or []):
        known = ", ".join(f"{behaviour_of(c).image}" for c in pod_spec.get("containers") or [])
        return ServingAnswer(False, f"nothing listens on {port}/{protocol} ({known or 'no containers'}): connection refused")
    return ServingAnswer(None, f"{port}/{protocol} is not a declared containerPort and the image is not one podnet knows; "
                               "whether anything listens cannot be told")
