"""What kubelet gives each container, as pure functions: environment, /etc/hosts, the argv.

- Environment: podnet.semantics.containerenv's container_environment, the one rule the
  simulator reads too: Service link variables, envFrom, env with
  $(VAR) expanded, valueFrom (fieldRef, configMapKeyRef, secretKeyRef, resourceFieldRef); a
  reference to a ConfigMap or Secret that is not there is kubelet's CreateContainerConfigError.
- /etc/hosts: kubelet's managed file with the pod's own name (and FQDN with hostname/subdomain)
  and hostAliases.
- The argv: images are behaviours (DESIGN.md, podnet.images): known images map onto podnet's
  implementations or the host's server, shell and python images run their command with the
  host's tools, any other image runs as a stand-in serving its declared and probed ports.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.controlplane.system import is_ingress_nginx
from podnet.images import PYTHON_IMAGES, SHELL_IMAGES, STANDIN, UNPULLABLE, behaviour_of, is_mesh_proxy
from podnet.semantics import ingress_controllers
from podnet.semantics.containerenv import expand as _expand

# What the python image's commands name, run with the host's python (the one running podnet)
PYTHON_COMMANDS = re.compile(r"python(3(\.\d+)?)?")
# The official redis image's defaults that differ from redis-server's: no protected mode (the
# image patches it out); podnet adds no persistence (a pod's data goes with it anyway).
REDIS_DEFAULTS = ["--protected-mode", "no", "--save", "", "--appendonly", "no"]


def service_account_name(pod: KubeObject) -> str:
    """The pod's ServiceAccount: spec.serviceAccountName (or the deprecated spec.serviceAccount),
    else `default`, as the ServiceAccount admission plugin fills it in."""
    return str(pod.spec.get("serviceAccountName") or pod.spec.get("serviceAccount") or "default")


def mounts_service_account_token(pod: KubeObject, service_account: KubeObject | None) -> bool:
    """Whether the pod gets the projected token volume at
    /var/run/secrets/kubernetes.io/serviceaccount: the pod's automountServiceAccountToken if it
    says, else its ServiceAccount's, else yes (the ServiceAccount admission's shouldAutomount)."""
    if pod.spec.get("automountServiceAccountToken") is not None:
        return bool(pod.spec["automountServiceAccountToken"])
    if service_account is not None and service_account.body.get("automountServiceAccountToken") is not None:
        return bool(service_account.body["automountServiceAccountToken"])
    return True


def hosts_file(pod: KubeObject, cluster: Cluster) -> str:
    """kubelet's managed /etc/hosts (ensureHostsFile / managedHostsFileContent)."""
    ip = fields.pod_ip(pod)
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    hostname = pod.spec.get("hostname") or pod.name
    subdomain = pod.spec.get("subdomain")
    if subdomain:
        domain = cluster.config.networking.dns_domain
        lines.append(f"{ip}\t{hostname}.{subdomain}.{pod.namespace}.svc.{domain}\t{hostname}")
    else:
        lines.append(f"{ip}\t{hostname}")
    aliases = pod.spec.get("hostAliases") or []
    if aliases:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        for alias in aliases:
            lines.append(f"{alias.get('ip')}\t" + "\t".join(alias.get("hostnames") or []))
    return "\n".join(lines) + "\n"


def container_argv(container: dict[str, Any], env: dict[str, str], standins: bool = True) -> list[str] | None:
    """The process to run for a container, as podnet.images.behaviour_of says: a known image's
    behaviour, its command as given (shell and python images run the host's tools), or the
    stand-in. None when there is nothing to run (nginx and redis: the runtime starts the host's
    server with the pod's own files; an image that cannot be pulled)."""
    image = fields.image_name(str(container.get("image") or ""))
    behaviour = behaviour_of(container, standins)
    if behaviour.runs == UNPULLABLE:
        return None
    if behaviour.runs == STANDIN:
        ports = [word for port, protocol in sorted(behaviour.listens) for word in (f"--{protocol.lower()}", str(port))]
        return [sys.executable, "-m", "podnet.agnhost.standin", behaviour.image, *ports]
    command = [_expand(str(c), env) for c in container.get("command") or []]
    args = [_expand(str(a), env) for a in container.get("args") or []]
    if image == "agnhost":
        words = command[1:] if command and command[0].endswith("agnhost") else command
        return [sys.executable, "-m", "podnet.agnhost", *words, *args]
    if image == "coredns" and not command:  # podnet's CoreDNS-compatible server, same flags
        return [sys.executable, "-m", "podnet.dns", *args]
    if is_ingress_nginx(str(container.get("image") or "")) and not command:  # the controller and its nginx
        served = ingress_controllers.flags_of(str(container.get("image") or ""), args)  # as trace reads them
        return [sys.executable, "-m", "podnet.ingressnginx", *args, *served.args()]
    if is_mesh_proxy(str(container.get("image") or "")) and not command:  # pilot-agent and its Envoy
        return [sys.executable, "-m", "podnet.mesh.pilot_agent", *args]
    if image == "pause":  # registry.k8s.io/pause exits 0 on SIGTERM (agnhost pause does not)
        return [sys.executable, "-m", "podnet.agnhost.pause_image"]
    if image in ("nginx", "nginx-unprivileged") and not command:
        return None  # the runtime starts the host's nginx with a per-pod config
    if behaviour.image == "redis-server":
        return None  # the runtime starts the host's redis-server in the pod's own directory (redis_argv)
    if image in PYTHON_IMAGES:
        argv = (command + args) or ["python3"]  # the image's CMD
        if PYTHON_COMMANDS.fullmatch(argv[0]):
            argv = [sys.executable, *argv[1:]]
        return argv
    if command:
        if image in SHELL_IMAGES and command[0] == image:  # `busybox sh -c …`: busybox's applet call
            command = command[1:]
        return command + args
    if image in SHELL_IMAGES:  # these images have no entrypoint: args are the command, CMD a shell
        return args or ["sh"]
    return None  # an entrypoint podnet does not have, for an image it knows (e.g. `redis` with args only)


def redis_argv(container: dict[str, Any], env: dict[str, str], data_dir: str) -> list[str]:
    """The host's redis-server for a `redis` container: the image's defaults, the container's
    own arguments (which win), then what the pod needs whatever they say: its data in
    `data_dir` (the pod's own directory) and redis in the foreground (a config file such as
    Debian's /etc/redis/redis.conf daemonizes, and the container would end)."""
    command = [_expand(str(c), env) for c in container.get("command") or []]
    args = [_expand(str(a), env) for a in container.get("args") or []]
    words = command[1:] + args
    config_file = words[:1] if words and not words[0].startswith("-") else []  # redis-server FILE --opt …
    return ["redis-server", *config_file, *REDIS_DEFAULTS, *words[len(config_file):],
            "--dir", data_dir, "--daemonize", "no"]
