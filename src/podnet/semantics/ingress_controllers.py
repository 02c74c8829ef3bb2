"""Which pods are ingress-nginx controllers, and which Ingresses each one serves.

A pod is a controller when a container runs ingress-nginx's image with the image's entrypoint
(controlplane.system.ingress_nginx_container): podnet's add-on, the seed's
`nginx-ingress-controller` Deployment, a Helm release — kubelet starts podnet.ingressnginx for
each, and `trace` routes a request that reaches one through nginx. What a controller serves
comes from its flags (the rest change nothing podnet models):

- `--controller-class` (default k8s.io/ingress-nginx): the IngressClasses whose spec.controller
  it owns;
- `--ingress-class` (default nginx): the `kubernetes.io/ingress.class` annotation it takes;
- `--watch-ingress-without-class` (default false since 1.0): whether an Ingress with no class
  at all is its. Before 1.0 there was no such flag: an Ingress without the annotation was
  served by a controller of the default class "nginx" (0.x internal/ingress/annotations/class
  `IsValid`: "ingress with default class | blank annotation on ingress"), so a 0.x image
  (`…/nginx-ingress-controller:0.21.0`) gets that default.

One reading for the three places that ask: kubelet (which passes the flags as resolved here to
the controller process), the controller process (podnet.ingressnginx.controller) and `trace`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Sequence

from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.controlplane.system import ingress_nginx_container
from podnet.semantics.containerenv import ContainerConfigError, expand, resolve_environment
from podnet.semantics.ingress import CLASS_NAME, CONTROLLER

_LEGACY_TAG = re.compile(r"v?0\.\d+")  # an image tag of ingress-nginx before 1.0


@dataclass(frozen=True)
class ControllerFlags:
    controller_class: str = CONTROLLER
    ingress_class: str = CLASS_NAME
    watch_ingress_without_class: bool = False

    def args(self) -> list[str]:
        """The flags as the controller process reads them (each one explicit)."""
        return [f"--controller-class={self.controller_class}", f"--ingress-class={self.ingress_class}",
                f"--watch-ingress-without-class={str(self.watch_ingress_without_class).lower()}"]


def add_flags(parser: argparse.ArgumentParser) -> None:
    """ingress-nginx's flags that decide which Ingresses are served, as pflag reads them."""
    parser.add_argument("--ingress-class", default=None)
    parser.add_argument("--controller-class", default=None)
    parser.add_argument("--watch-ingress-without-class", type=_flag, nargs="?", const=True, default=None)


def from_namespace(args: argparse.Namespace, legacy: bool = False) -> ControllerFlags:
    """The flags parsed by `add_flags`, with ingress-nginx's defaults (a 0.x image's: `legacy`)."""
    ingress_class = args.ingress_class if args.ingress_class is not None else CLASS_NAME
    watch = args.watch_ingress_without_class
    if watch is None:
        watch = legacy and ingress_class == CLASS_NAME
    return ControllerFlags(args.controller_class if args.controller_class is not None else CONTROLLER,
                           ingress_class, watch)


def flags_of(image: str, args: Sequence[str]) -> ControllerFlags:
    """The controller's flags from its container's image and args."""
    parser = argparse.ArgumentParser(add_help=False)
    add_flags(parser)
    known, _ = parser.parse_known_args([str(a) for a in args])
    return from_namespace(known, is_legacy(image))


def is_legacy(image: str) -> bool:
    """An ingress-nginx image from before 1.0 (by its tag; a digest alone says nothing)."""
    tag = image.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]
    return bool(_LEGACY_TAG.match(tag))


def pod_controller(pod: KubeObject, cluster: Cluster, cache: dict | None = None) -> ControllerFlags | None:
    """The flags of a pod's controller as kubelet starts it: its args with $(VAR) expanded from
    the container's environment (ConfigMap and Secret values too); None when the pod runs none,
    or kubelet would not create the container. `cache`: containerenv.service_environment's."""
    container = ingress_nginx_container(pod.spec)
    if container is None:
        return None
    try:
        environment = resolve_environment(pod, container, cluster, cache=cache).env
    except ContainerConfigError:
        return None
    args = [expand(str(a), environment) for a in container.get("args") or []]
    return flags_of(str(container.get("image") or ""), args)


def _flag(text: str) -> bool:
    return str(text).lower() in ("1", "t", "true")  # Go's strconv.ParseBool, as pflag reads it
