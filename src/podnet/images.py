"""Container images as behaviours: what a container runs and listens on, from its image,
command, args and ports.

No registry is reachable, so podnet runs every image as something this machine has (DESIGN.md):
- built-in behaviours: agnhost, pause, coredns, the ingress-nginx controller (podnet's own
  implementations, same flags) and nginx (the host's nginx with a default page);
- the real server from Debian: `redis` runs the host's redis-server;
- the host's tools: shell images (busybox, alpine, …) and `python` images run their command;
- any other image is a *stand-in*: a network endpoint serving exactly its declared
  containerPorts and its probes' ports (TCP and HTTP with agnhost netexec's handlers, UDP
  echo), so Services, probes and policies behave as they would with the real image. With the
  cluster config's `images: strict` such an image fails as one kubelet cannot pull.
This module is the one copy of that knowledge: the simulator asks it whether anything answers on
a port, and the data plane starts what it says (podnet.kubelet.container_argv, podnet.standin),
so `trace` and the kernel agree. Flags and defaults are those of the upstream images (agnhost:
kubernetes/test/images/agnhost; redis: redis-server's --port, default 6379).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from podnet.agnhost.ports import listens
from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.controlplane.system import is_ingress_nginx
from podnet.semantics.containerenv import ContainerConfigError, container_environments, expand
from podnet.semantics.policymatch import ICMP

AGNHOST = "agnhost"


# What runs for a container (Behaviour.runs)
BUILTIN = "builtin"  # podnet's implementation of the image, or the host's nginx
SERVER = "server"  # the real server from Debian (redis-server)
HOST = "host"  # the container's own command, with the host's tools: what it serves cannot be told
STANDIN = "stand-in"  # an image podnet does not have: serves its declared and probed ports
UNPULLABLE = "unpullable"  # images: strict, an image podnet does not have: nothing runs

# Images without an entrypoint whose commands are the host's own tools (their CMD: a shell).
SHELL_IMAGES = frozenset({"busybox", "alpine", "ubuntu", "debian", "bash", "fedora", "centos", "curl", "netshoot"})
PYTHON_IMAGES = frozenset({"python"})
REDIS_DEFAULT_PORT = 6379


@dataclass(frozen=True)
class Behaviour:
    image: str  # "agnhost netexec", "nginx", "redis-server", … or the image's name
    listens: frozenset[tuple[int, str]] = field(default_factory=frozenset)  # (port, protocol)
    runs: str = BUILTIN

    @property
    def known(self) -> bool:
        """Whether podnet can tell exactly what the container listens on."""
        return self.runs != HOST

    def serves(self, port: int, protocol: str) -> bool:
        return (port, protocol) in self.listens

    def summary(self) -> str:
        """One line for `describe pod` and the container's log: what runs in place of the image."""
        ports = ", ".join(f"{port}/{protocol}" for port, protocol in sorted(self.listens)) or "no port"
        if self.runs == STANDIN:
            return (f"stand-in for image {self.image} (podnet does not have it): serves {ports} "
                    "(TCP and HTTP: agnhost netexec's handlers, UDP: echo)")
        if self.runs == UNPULLABLE:
            return f"image {self.image} cannot be pulled (images: strict): nothing runs"
        if self.runs == HOST:
            return f"{self.image}: its command with the host's tools"
        return f"{self.image}: listens on {ports}"


# The mesh's proxy images (Istio's proxyv2, Linkerd's proxy): podnet.mesh.pilot_agent runs Envoy
# (the pinned wheel) with the configuration podnet's control plane writes. Envoy's outbound and
# inbound capture ports, the agent's status port, the proxy's readiness and Envoy's metrics.
MESH_PROXY_PORTS = frozenset({(15001, "TCP"), (15006, "TCP"), (15020, "TCP"), (15021, "TCP"), (15090, "TCP")})


def is_mesh_proxy(image: str) -> bool:
    """istio/proxyv2 (any registry) or Linkerd's cr.l5d.io/linkerd/proxy."""
    name = fields.image_name(image)
    return (name == "proxyv2" and "istio" in image) or (name == "proxy" and "linkerd" in image)


# podnet.ingressnginx's nginx: HTTP, HTTPS and the controller's health port (no admission webhook)
INGRESS_NGINX_PORTS = frozenset({(80, "TCP"), (443, "TCP"), (10254, "TCP")})


def _agnhost(words: list[str], env: dict[str, str]) -> Behaviour:
    if not words:
        return Behaviour("agnhost", frozenset())  # prints its help and exits
    # The container runs podnet.agnhost; ask its own command-line parser what that argv serves,
    # so the simulator and the running pod cannot disagree (flag syntax, defaults, env ports).

    sub, ports = listens(words, env)
    return Behaviour(f"agnhost {sub or words[0]}", ports)


def _port_number(port: Any, declared: list[dict[str, Any]]) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for item in declared:
        if item.get("name") == port:
            return int(item["containerPort"])
    return None


def standin_ports(container: dict[str, Any]) -> frozenset[tuple[int, str]]:
    """What a stand-in serves: the declared containerPorts, and the ports its probes reach
    (tcpSocket, httpGet and grpc are TCP)."""
    declared = [p for p in container.get("ports") or [] if isinstance(p, dict) and "containerPort" in p]
    found = {(int(p["containerPort"]), fields.protocol(p)) for p in declared}
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name) or {}
        for handler in ("tcpSocket", "httpGet", "grpc"):
            if isinstance(probe.get(handler), dict):
                port = _port_number(probe[handler].get("port"), declared)
                if port is not None and 0 < port <= 65535:
                    found.add((port, "TCP"))
    return frozenset(found)


def redis_port(words: list[str]) -> int:
    """redis-server's port from its arguments (`--port N`, the last one wins), default 6379."""
    port = REDIS_DEFAULT_PORT
    for i, word in enumerate(words[:-1]):
        if word == "--port" and words[i + 1].isdigit():
            port = int(words[i + 1])
    return port


def behaviour_of(container: dict[str, Any], standins: bool = True, env: Mapping[str, str] | None = None) -> Behaviour:
    """What runs for `container`; `standins` False (the cluster config's `images: strict`): an
    image podnet does not have cannot be pulled. `env`: the environment kubelet gives the
    container (containerenv), which $(VAR) in command and args are expanded with, as kubelet
    does before it starts the process; without it, the container's literal values only."""
    name = fields.image_name(str(container.get("image") or ""))
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if env is None:
        env = {e.get("name"): str(e.get("value", "")) for e in container.get("env") or [] if isinstance(e, dict)}
    else:
        command, args = [expand(c, env) for c in command], [expand(a, env) for a in args]
    if name == AGNHOST:
        words = (command[1:] if command and command[0].endswith("agnhost") else command) + args
        return _agnhost(words, env)
    if name == "pause":
        return Behaviour("pause", frozenset())
    if name in ("nginx", "nginx-unprivileged"):
        return Behaviour("nginx", frozenset({(80, "TCP")}))
    if is_ingress_nginx(str(container.get("image") or "")):
        return Behaviour("ingress-nginx", INGRESS_NGINX_PORTS)
    if is_mesh_proxy(str(container.get("image") or "")) and not command:
        return Behaviour("mesh proxy (Envoy)", MESH_PROXY_PORTS)
    if name == "coredns":
        return Behaviour("coredns", frozenset({(53, "UDP"), (53, "TCP"), (9153, "TCP"), (8080, "TCP"), (8181, "TCP")}))
    if name == "redis" and (not command or command[0].endswith("redis-server")):
        return Behaviour("redis-server", frozenset({(redis_port(command[1:] + args), "TCP")}), SERVER)
    if name in SHELL_IMAGES or name in PYTHON_IMAGES or name == "redis":  # redis: e.g. `redis-cli …`
        return Behaviour(name, frozenset(), HOST)
    if not standins:
        return Behaviour(str(container.get("image") or ""), frozenset(), UNPULLABLE)
    return Behaviour(str(container.get("image") or ""), standin_ports(container), STANDIN)


@dataclass(frozen=True)
class ServingAnswer:
    serving: bool | None  # None: cannot tell (unknown image, port not declared)
    detail: str


def echo_answer(where: str) -> ServingAnswer:
    """An ICMP echo request (protocol ICMP, port 0) is answered by the kernel, whatever runs."""
    return ServingAnswer(True, f"the kernel in {where}'s network namespace answers the echo request "
                               "(nothing needs to listen)")


def pod_serving(pod: KubeObject, cluster: Cluster, port: int, protocol: str, cache: dict | None = None) -> ServingAnswer:
    """`serving` for a pod of `cluster`, each container with the environment kubelet gives it (a
    container kubelet would not create serves nothing). `cache`: kept by a caller asking for many
    pods of one unchanging cluster (containerenv.service_environment's)."""
    return serving(pod.spec, port, protocol, cluster.config.standins, container_environments(pod, cluster, cache))


def serving(pod_spec: dict[str, Any], port: int, protocol: str, standins: bool = True,
            environments: Mapping[str, Mapping[str, str] | ContainerConfigError] | None = None) -> ServingAnswer:
    """Is something in the pod listening on port/protocol? `standins`: as behaviour_of.
    `environments`: container name -> its environment, or why kubelet does not create it."""
    if protocol == ICMP:
        return echo_answer("the pod")
    declared = []
    not_created = []
    for container in pod_spec.get("containers") or []:
        env = (environments or {}).get(container.get("name"))
        if isinstance(env, ContainerConfigError):
            not_created.append(f"container {container.get('name')} is not created ({env.reason}: {env})")
            continue
        behaviour = behaviour_of(container, standins, env)
        ports = [(int(p["containerPort"]), fields.protocol(p)) for p in container.get("ports") or []]
        declared += ports
        if behaviour.known:
            if behaviour.serves(port, protocol):
                what = f"the stand-in for image {behaviour.image}" if behaviour.runs == STANDIN else behaviour.image
                return ServingAnswer(True, f"{what} in container {container.get('name')} listens on {port}/{protocol}")
        elif (port, protocol) in ports:
            return ServingAnswer(True, f"container {container.get('name')} declares containerPort {port}/{protocol}")
    if not_created:
        return ServingAnswer(False, f"nothing listens on {port}/{protocol}: {'; '.join(not_created)}: connection refused")
    behaviours = [behaviour_of(c, standins, (environments or {}).get(c.get("name"))) for c in pod_spec.get("containers") or []]
    if all(b.known for b in behaviours):
        known = ", ".join(b.image + {STANDIN: " (stand-in)", UNPULLABLE: " (cannot be pulled)"}.get(b.runs, "")
                          for b in behaviours)
        return ServingAnswer(False, f"nothing listens on {port}/{protocol} ({known or 'no containers'}): connection refused")
    return ServingAnswer(None, f"{port}/{protocol} is not a declared containerPort and the image is not one podnet knows; "
                               "whether anything listens cannot be told")


def pull_reference(image: str) -> str:
    """The reference a container runtime pulls for `image` (docker's normalisation):
    nginx -> docker.io/library/nginx:latest, me/app:1 -> docker.io/me/app:1."""
    first, _, rest = image.partition("/")
    if not rest:
        image = f"docker.io/library/{image}"
    elif "." not in first and ":" not in first and first != "localhost":
        image = f"docker.io/{image}"
    name = image.rsplit("/", 1)[-1]
    return image if (":" in name or "@" in image) else f"{image}:latest"


def pull_error(image: str) -> str:
    """containerd's answer, as kubelet reports it (ErrImagePull), for an image no registry has."""
    ref = pull_reference(image)
    return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": failed to resolve '
            f'reference "{ref}": {ref}: not found (podnet has no registry, and images: strict runs no stand-in)')


def pull_backoff(image: str) -> str:
    """kubelet's message while it waits to pull again (ImagePullBackOff)."""
    return f'Back-off pulling image "{image}"'
