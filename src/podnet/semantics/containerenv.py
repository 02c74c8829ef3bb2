"""A container's environment as kubelet makes it, as pure functions (kubelet_pods.go
makeEnvironmentVariables, and pkg/api/v1/resource for resourceFieldRef). The runtime that starts
the process (podnet.linux.runtime, through podnet.kubelet) and the simulator (`podnet explain`)
both ask here, so they agree on what a container sees and on whether it is created at all.

What the process gets, later entries winning:

- the Service link variables of the pod's namespace (when enableServiceLinks) and always those
  of `default/kubernetes`: <NAME>_SERVICE_HOST, <NAME>_SERVICE_PORT, <NAME>_SERVICE_PORT_<PORTNAME>,
  <NAME>_PORT, <NAME>_PORT_<port>_<PROTO>, …_PROTO, …_PORT, …_ADDR (getServiceEnvVarMap);
- `envFrom`, in order: every key of a ConfigMap's `data` (not `binaryData`) or of a Secret's
  `data` (base64) and `stringData` (which the API server merges over `data`), with the source's
  `prefix`; a later source overrides an earlier one;
- `env`, in order: a `value` with $(VAR) expanded against what is defined before it (envFrom,
  earlier env, Service links; an undefined reference stays as written, $$ is $); a `valueFrom`
  as it resolves, never expanded: fieldRef, configMapKeyRef, secretKeyRef, resourceFieldRef.

A non-optional reference to a ConfigMap or Secret that does not exist, or to a key it does not
have, means the container is not created: ContainerConfigError, kubelet's waiting reason
CreateContainerConfigError with its message (`configmap "x" not found`, `couldn't find key k in
ConfigMap ns/x`); kubelet tries again at its next sync, so the container starts once the object
is there. `optional: true` leaves the variable (or the whole source) out instead — not empty:
an envFrom value of the same name stays.

Names. Since RelaxedEnvironmentVariableValidation (GA in 1.34) kubelet takes every key of an
envFrom source as it is — `app.properties` and `1st` become variables — and records no
InvalidEnvironmentVariableNames event any more (kubernetes#130099: the keys are valid now). A
key can still make a name no process environment can hold (empty, or with `=` or NUL: reachable
through a `prefix`, which podnet does not validate): podnet skips those and reports them as
that event (SkippedNames). A value holding a NUL byte cannot be passed to execve: the runtime
fails to start the container (runc's "setenv: invalid argument"), kubelet's RunContainerError.

resourceFieldRef (ExtractContainerResourceValue): limits.* and requests.* of cpu, memory,
ephemeral-storage and hugepages-<size>, divided by `divisor` (unset or zero: 1) and rounded up —
cpu in millicores, ceil(milli(cpu) / milli(divisor)), the others in units, ceil(value /
value(divisor)). A request left out is the limit (the API server's defaulting); a limit left out
(or zero) of cpu, memory or ephemeral-storage is the node's allocatable
(defaultPodLimitsForDownwardAPI). podnet's nodes are namespaces on one host with no cgroup
limits, so a container without a limit may use the whole host: the node's allocatable is the
host's (host_allocatable: the CPUs this process may run on, MemTotal, the root filesystem's
size). Pod-level resources (spec.resources) are not read.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster

CREATE_CONFIG_ERROR = "CreateContainerConfigError"  # kubelet's ErrCreateContainerConfig
RUN_CONTAINER_ERROR = "RunContainerError"  # kubelet's ErrRunContainer: the runtime could not start it
INVALID_NAMES_REASON = "InvalidEnvironmentVariableNames"
MASTER_SERVICES = ("kubernetes",)  # default/<name>: its variables are in every pod of every namespace
_VAR_REF = re.compile(r"\$\(([^)]*)\)|\$\$")  # expansion.go's tryReadVariableName: a name is all up to the first )
# resource.Quantity's form: a decimal, then a binary or decimal suffix or an exponent
MAX_EXPONENT = 64  # a decimal exponent past any int64 quantity (and any milli/nano of one)
_QUANTITY = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|[numkMGTPE])?")
_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 10**3),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
    **{s: Fraction(2 ** (10 * (i + 1))) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}
DEFAULTED_LIMITS = ("cpu", "memory", "ephemeral-storage")  # MergeContainerResourceLimits's; hugepages never
HUGEPAGES_PREFIX = "hugepages-"


class ContainerConfigError(Exception):
    """kubelet cannot make the container's config: it is not created, and waits with `reason`
    (CreateContainerConfigError, or RunContainerError for what the runtime refuses) and the
    message, which is kubelet's."""

    def __init__(self, message: str, reason: str = CREATE_CONFIG_ERROR):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SkippedNames:
    """Keys of one envFrom source left out: the names they make cannot be environment variables."""
    kind: str  # "configMap" or "secret", as kubelet's event says it
    namespace: str
    name: str
    keys: tuple[str, ...]

    @property
    def message(self) -> str:
        """kubelet's InvalidEnvironmentVariableNames event (before 1.34), word for word."""
        return (f"Keys [{', '.join(self.keys)}] from the EnvFrom {self.kind} {self.namespace}/{self.name} "
                "were skipped since they are considered invalid environment variable names.")


@dataclass(frozen=True)
class ContainerEnvironment:
    env: dict[str, str]  # what the process gets
    own: dict[str, str]  # the container's own variables (envFrom and env), without the Service links
    skipped: tuple[SkippedNames, ...] = ()


def _env_name(service: str) -> str:
    return service.upper().replace("-", "_")


def service_environment(pod: KubeObject, cluster: Cluster, cache: dict | None = None) -> dict[str, str]:
    """Service link variables, as kubelet's getServiceEnvVarMap builds them. `cache`: a dict kept
    by a caller that asks for many pods of one cluster that does not change meanwhile (the
    simulator): the variables depend only on the pod's namespace and enableServiceLinks."""
    links = pod.spec.get("enableServiceLinks", True) is not False
    if cache is not None:
        key = (pod.namespace, links)
        if key not in cache:
            cache[key] = service_environment(pod, cluster)
        return dict(cache[key])
    by_name: dict[str, KubeObject] = {}
    for svc in cluster.of_kind("Service"):
        if not fields.cluster_ip(svc) or svc.spec.get("type") == "ExternalName":
            continue
        # the API server's own Service in every pod, even without service links; a Service of
        # the pod's namespace with the same name takes its place (kubelet's getServiceEnvVarMap)
        if svc.namespace == "default" and svc.name in MASTER_SERVICES:
            by_name.setdefault(svc.name, svc)
        elif svc.namespace == pod.namespace and links:
            by_name[svc.name] = svc
    env: dict[str, str] = {}
    for svc in by_name.values():
        name, ip = _env_name(svc.name), fields.cluster_ip(svc)
        ports = svc.spec.get("ports") or []
        if not ports:
            continue
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port["port"])
        first = ports[0]
        env[f"{name}_PORT"] = f"{fields.protocol(first).lower()}://{ip}:{first['port']}"
        for port in ports:
            protocol = fields.protocol(port)
            prefix = f"{name}_PORT_{port['port']}_{protocol}"
            env[prefix] = f"{protocol.lower()}://{ip}:{port['port']}"
            env[f"{prefix}_PROTO"] = protocol.lower()
            env[f"{prefix}_PORT"] = str(port["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


def container_environment(pod: KubeObject, container: dict[str, Any], cluster: Cluster,
                          allocatable: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The process's environment (resolve_environment(...).env); ContainerConfigError when
    kubelet would not create the container."""
    return resolve_environment(pod, container, cluster, allocatable).env


def container_environments(pod: KubeObject, cluster: Cluster,
                           cache: dict | None = None) -> dict[str, dict[str, str] | ContainerConfigError]:
    """Each of the pod's containers' environment, or why kubelet would not create it (`cache`:
    as service_environment's)."""
    out: dict[str, dict[str, str] | ContainerConfigError] = {}
    for container in pod.spec.get("containers") or []:
        try:
            out[container.get("name")] = resolve_environment(pod, container, cluster, cache=cache).env
        except ContainerConfigError as exc:
            out[container.get("name")] = exc
    return out


def resolve_environment(pod: KubeObject, container: dict[str, Any], cluster: Cluster,
                        allocatable: Mapping[str, Any] | None = None, cache: dict | None = None) -> ContainerEnvironment:
    """The container's environment as kubelet makes it (module doc). `allocatable`: the node's
    (resource name -> quantity) for limits left out; the host's when None. Raises
    ContainerConfigError when kubelet would not create the container."""
    services = service_environment(pod, cluster, cache)
    sources = _Sources(pod.namespace, cluster)
    own: dict[str, str] = {}
    skipped: list[SkippedNames] = []
    for source in container.get("envFrom") or []:
        _env_from(source, sources, own, skipped)
    for item in container.get("env") or []:
        value = item.get("value")
        if value is not None and value != "":
            own[item["name"]] = expand(str(value), {**services, **own})
        elif item.get("valueFrom"):
            resolved = _value_from(item["valueFrom"], pod, container, sources, allocatable)
            if resolved is not None:  # None: an optional reference to what is not there
                own[item["name"]] = resolved
        else:
            own[item["name"]] = ""
    for name, value in own.items():
        if not holdable_name(name):  # env[].name "A=B": kubelet's runtime refuses it, as execve cannot hold it
            raise ContainerConfigError(f"failed to start container {container.get('name')!r}: setenv: invalid "
                                       f"argument (the variable name {name!r} holds '=' or a NUL byte)",
                                       RUN_CONTAINER_ERROR)
        if "\0" in value:
            raise ContainerConfigError(f"failed to start container {container.get('name')!r}: setenv: invalid "
                                       f"argument (the value of {name} holds a NUL byte)", RUN_CONTAINER_ERROR)
    env = {**services, **own}
    env.setdefault("HOSTNAME", pod.spec.get("hostname") or pod.name)
    return ContainerEnvironment(env, own, tuple(skipped))


def expand(value: str, env: Mapping[str, str]) -> str:
    """kubelet's $(VAR) expansion (third_party/forked/golang/expansion): a defined name is
    replaced, an undefined reference stays as written, $$ is $."""
    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, value)


def holdable_name(name: str) -> bool:
    """Whether a process environment can hold a variable of this name (execve's NAME=value)."""
    return bool(name) and "=" not in name and "\0" not in name


class _Sources:
    """The pod's namespace's ConfigMaps and Secrets as kubelet's managers give them: their data,
    or ContainerConfigError with kubelet's message when one is not there."""

    def __init__(self, namespace: str, cluster: Cluster):
        self.namespace, self.cluster = namespace, cluster

    def config_map(self, name: str, optional: bool) -> dict[str, str] | None:
        obj = self.cluster.get("ConfigMap", self.namespace, name)
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'configmap "{name}" not found')
        return {str(k): "" if v is None else str(v) for k, v in (obj.body.get("data") or {}).items()}

    def secret(self, name: str, optional: bool) -> dict[str, str] | None:
        obj = self.cluster.get("Secret", self.namespace, name)
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'secret "{name}" not found')
        data = {}
        for key in fields.secret_keys(obj.body):
            try:
                raw = fields.secret_value(obj.body, key) or b""
            except ValueError as exc:
                raise ContainerConfigError(f"secret {self.namespace}/{name}: {exc}") from None
            # bytes as they are: what is not UTF-8 reaches the process unchanged (os.fsencode)
            data[str(key)] = raw.decode("utf-8", "surrogateescape")
        return data


def _env_from(source: dict[str, Any], sources: _Sources, own: dict[str, str], skipped: list[SkippedNames]) -> None:
    if source.get("configMapRef") is not None:
        ref, kind = source["configMapRef"], "configMap"
        data = sources.config_map(str(ref.get("name") or ""), bool(ref.get("optional")))
    elif source.get("secretRef") is not None:
        ref, kind = source["secretRef"], "secret"
        data = sources.secret(str(ref.get("name") or ""), bool(ref.get("optional")))
    else:
        return
    if data is None:
        return
    prefix = str(source.get("prefix") or "")
    invalid = []
    for key, value in data.items():
        if holdable_name(prefix + key):
            own[prefix + key] = value
        else:
            invalid.append(prefix + key)
    if invalid:
        skipped.append(SkippedNames(kind, sources.namespace, str(ref.get("name") or ""), tuple(sorted(invalid))))


def _value_from(source: dict[str, Any], pod: KubeObject, container: dict[str, Any], sources: _Sources,
                allocatable: Mapping[str, Any] | None) -> str | None:
    if source.get("configMapKeyRef") is not None:
        return _key_ref(source["configMapKeyRef"], "ConfigMap", sources)
    if source.get("secretKeyRef") is not None:
        return _key_ref(source["secretKeyRef"], "Secret", sources)
    if source.get("resourceFieldRef") is not None:
        return resource_field_value(source["resourceFieldRef"], pod, container,
                                    host_allocatable() if allocatable is None else allocatable)
    return _field_ref(str((source.get("fieldRef") or {}).get("fieldPath") or ""), pod)


def _key_ref(ref: dict[str, Any], kind: str, sources: _Sources) -> str | None:
    name, key, optional = str(ref.get("name") or ""), str(ref.get("key") or ""), bool(ref.get("optional"))
    data = sources.config_map(name, optional) if kind == "ConfigMap" else sources.secret(name, optional)
    if data is None:
        return None
    if key not in data:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {sources.namespace}/{name}")
    return data[key]


def _field_ref(path: str, pod: KubeObject) -> str:
    known = {
        "metadata.name": pod.name, "metadata.namespace": pod.namespace,
        "metadata.uid": pod.metadata.get("uid", ""), "spec.nodeName": pod.spec.get("nodeName", ""),
        "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
        "status.podIP": fields.pod_ip(pod), "status.hostIP": fields.host_ip(pod),
        "status.hostIPs": fields.host_ip(pod), "status.podIPs": ",".join(fields.pod_ips(pod)),
    }
    if path in known:
        return str(known[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((pod.metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    return ""


# -- resourceFieldRef ---------------------------------------------------------------------------

def quantity(value: Any) -> Fraction:
    """A resource.Quantity's exact value ("250m" -> 1/4, "1Gi" -> 2**30, "1e3" -> 1000)."""
    text = str(value).strip()
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ContainerConfigError(f"quantities must match the regular expression "
                                   f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {text!r})")
    number, suffix = Fraction(match.group(1)), match.group(2) or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        exponent = int(suffix[1:])
        if abs(exponent) > MAX_EXPONENT:  # 10**999999999 would take the supervisor's CPU for minutes
            raise ContainerConfigError(f"quantity {text!r} is out of range (an exponent beyond ±{MAX_EXPONENT}; "
                                       "the largest a resource holds is 2**63-1)")
        return number * Fraction(10) ** exponent
    return number * _SUFFIXES[suffix]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b) if b > 0 else math.ceil(Fraction(a, b))


def resource_field_value(ref: dict[str, Any], pod: KubeObject, container: dict[str, Any],
                         allocatable: Mapping[str, Any]) -> str:
    """A resourceFieldRef's value (kubelet's containerResourceRuntimeValue): of the container
    itself, or of the pod's container named `containerName`, its limits defaulted to
    `allocatable` as kubelet defaults them."""
    resource = str(ref.get("resource") or "")
    target: dict[str, Any] | None = container
    defaulted = True
    if ref.get("containerName"):
        name = ref["containerName"]
        target = next((c for c in pod.spec.get("containers") or [] if c.get("name") == name), None)
        if target is None:  # kubelet defaults the limits of the pod's containers, not its init containers'
            defaulted = False
            target = next((c for c in pod.spec.get("initContainers") or [] if c.get("name") == name), None)
        if target is None:
            raise ContainerConfigError(f"container {name} not found")
    requests, limits = _resources(target, allocatable if defaulted else {})
    divisor = quantity(ref["divisor"]) if ref.get("divisor") not in (None, "") else Fraction(0)
    if divisor == 0:
        divisor = Fraction(1)
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not (name in DEFAULTED_LIMITS or name.startswith(HUGEPAGES_PREFIX)):
        raise ContainerConfigError(f"unsupported container resource : {resource}")
    amount = (limits if kind == "limits" else requests).get(name, Fraction(0))
    if name == "cpu":  # convertResourceCPUToString: millicores
        return str(_ceil_div(math.ceil(amount * 1000), math.ceil(divisor * 1000)))
    return str(_ceil_div(math.ceil(amount), math.ceil(divisor)))


def _resources(container: dict[str, Any], allocatable: Mapping[str, Any]) -> tuple[dict[str, Fraction], dict[str, Fraction]]:
    """The container's requests and limits as kubelet sees them: a request left out is the
    limit (the API server's defaulting, before kubelet's), a limit left out or zero of
    DEFAULTED_LIMITS is the node's allocatable."""
    resources = container.get("resources") or {}
    limits = {str(k): quantity(v) for k, v in (resources.get("limits") or {}).items()}
    requests = {**limits, **{str(k): quantity(v) for k, v in (resources.get("requests") or {}).items()}}
    for name in DEFAULTED_LIMITS:
        if not limits.get(name) and name in allocatable:
            limits[name] = quantity(allocatable[name])
    return requests, limits


@functools.cache
def host_allocatable() -> dict[str, str]:
    """The node's allocatable for limits left out: the host's, as podnet's nodes share it
    (module doc). Read once."""
    memory = 0
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:
        storage = shutil.disk_usage("/").total
    except OSError:
        storage = 0
    return {"cpu": str(len(os.sched_getaffinity(0))), "memory": str(memory), "ephemeral-storage": str(storage)}
