"""The checks the API server makes on create beyond the OpenAPI schema (pkg/apis/*/validation).

`validate_object` assumes the object passed the strict schema check (types right, no unknown
fields), but not that required fields are present or non-null: every access here tolerates a
missing or null value. Messages follow k8s.io/apimachinery/pkg/util/validation/field
("Invalid value: ...", "Required value", "Unsupported value: ...: supported values: ...").

The body is not defaulted first: an unset field that the API server would default (a port's
protocol, a Service's type, a probe's successThreshold) is checked as if it held the default.

Paths follow the API server's, except where its path names no field of the YAML: label
errors of a pod template are reported at template.metadata.labels (not template.labels),
and a Service's clusterIP errors at spec.clusterIP when only that field was written.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from podnet.api import defaults as api_defaults
from podnet.api import labels, names
from podnet.api.fields import DEFAULT_PROTOCOL
from podnet.api.kinds import BY_KIND, RBAC_GROUP
from podnet.api.objects import KubeObject
from podnet.api.problems import FieldPath, Problem

# ---------------------------------------------------------------- problems, worded like field.Error


def _show(value: Any) -> str:
    """A bad value as the API server prints it: strings quoted, numbers bare, structures as JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _invalid(path: FieldPath, value: Any, detail: str) -> Problem:
    return Problem(path, f"Invalid value: {_show(value)}: {detail}")


def _required(path: FieldPath, detail: str = "") -> Problem:
    return Problem(path, f"Required value: {detail}" if detail else "Required value")


def _forbidden(path: FieldPath, detail: str) -> Problem:
    return Problem(path, f"Forbidden: {detail}")


def _duplicate(path: FieldPath, value: Any) -> Problem:
    return Problem(path, f"Duplicate value: {_show(value)}")


def _not_supported(path: FieldPath, value: Any, supported: Sequence[str]) -> Problem:
    listed = ", ".join(json.dumps(item) for item in supported)
    return Problem(path, f"Unsupported value: {_show(value)}: supported values: {listed}")


def _too_long(path: FieldPath, limit: int) -> Problem:
    return Problem(path, f"Too long: may not be more than {limit} bytes")


def _too_many(path: FieldPath, actual: int, limit: int) -> Problem:
    return Problem(path, f"Too many: {actual}: must have at most {limit} items")


def _invalid_each(path: FieldPath, value: Any, messages: Iterable[str]) -> list[Problem]:
    return [_invalid(path, value, message) for message in messages]


# ---------------------------------------------------------------- tolerant access to the body


def _map(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


# ---------------------------------------------------------------- shared field checks

_PROTOCOLS = ("SCTP", "TCP", "UDP")  # the API server lists them sorted, except for NetworkPolicy
_MAX_ANNOTATIONS_BYTES = 256 * 1024
_MAX_DATA_BYTES = 1024 * 1024  # Secret and ConfigMap


def _validate_labels(label_map: Any, path: FieldPath) -> list[Problem]:
    """ValidateLabels: keys are qualified names, values label values; reported at the map itself."""
    problems = []
    for key, value in _map(label_map).items():
        key = str(key)
        problems += _invalid_each(path, key, names.is_qualified_name(key))
        text = _str(value)
        problems += _invalid_each(path, text, names.is_valid_label_value(text))
    return problems


def _validate_annotations(annotation_map: Any, path: FieldPath) -> list[Problem]:
    problems = []
    total = 0
    for key, value in _map(annotation_map).items():
        key = str(key)
        # Annotation keys are qualified names whose case does not matter.
        problems += _invalid_each(path, key, names.is_qualified_name(key.lower()))
        total += len(key.encode()) + len(_str(value).encode())
    if total > _MAX_ANNOTATIONS_BYTES:
        problems.append(_too_long(path, _MAX_ANNOTATIONS_BYTES))
    return problems


def validate_label_selector(selector: Any, path: FieldPath) -> list[Problem]:
    """ValidateLabelSelector for a metav1.LabelSelector at `path`; None or absent is valid."""
    if not isinstance(selector, dict):
        return []
    problems = _validate_labels(selector.get("matchLabels"), path + ("matchLabels",))
    for i, expression in enumerate(_list(selector.get("matchExpressions"))):
        expression = _map(expression)
        expression_path = path + ("matchExpressions", i)
        operator = expression.get("operator")
        values = _list(expression.get("values"))
        if operator in ("In", "NotIn"):
            if not values:
                problems.append(
                    _required(expression_path + ("values",), "must be specified when `operator` is 'In' or 'NotIn'")
                )
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                problems.append(
                    _forbidden(
                        expression_path + ("values",),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            problems.append(_invalid(expression_path + ("operator",), operator, "not a valid selector operator"))
        key = _str(expression.get("key"))
        problems += _invalid_each(expression_path + ("key",), key, names.is_qualified_name(key))
        for j, value in enumerate(values):
            text = _str(value)
            problems += _invalid_each(expression_path + ("values", j), text, names.is_valid_label_value(text))
    return problems


def _check_name(path: FieldPath, value: str, check: Callable[[str], list[str]]) -> list[Problem]:
    return _invalid_each(path, value, check(value))


def _check_port_number(path: FieldPath, port: int) -> list[Problem]:
    return _invalid_each(path, port, names.is_valid_port_num(port))


def _check_port_number_or_name(path: FieldPath, port: Any) -> list[Problem]:
    """ValidatePortNumOrName for an IntOrString; a quoted number ("8080") is a name, and invalid."""
    if isinstance(port, str):
        return _invalid_each(path, port, names.is_iana_svc_name(port))
    number = _int(port)
    return _check_port_number(path, 0 if number is None else number)


def _check_protocol(path: FieldPath, protocol: Any) -> list[Problem]:
    """A port protocol; absent or "" is defaulted to TCP."""
    text = _str(protocol) or DEFAULT_PROTOCOL
    return [] if text in _PROTOCOLS else [_not_supported(path, text, _PROTOCOLS)]


def _check_nonnegative(path: FieldPath, value: Any) -> list[Problem]:
    number = _int(value)
    if number is not None and number < 0:
        return [_invalid(path, number, "must be greater than or equal to 0")]
    return []


def _check_endpoint_ip(path: FieldPath, text: str) -> list[Problem]:
    """An IP that traffic will be sent to (endpoints, external IPs): valid and not special."""
    address = names.parse_ip(text)
    if address is None:
        return [_invalid(path, text, names.IP_ERROR)]
    return _invalid_each(path, text, names.special_ip_errors(address, text))


def _is_ipv6(text: str) -> bool:
    address = names.parse_ip(text)
    return address is not None and names.ipv4_view(address).version == 6


def _check_path_segment(path: FieldPath, value: str) -> list[Problem]:
    return _invalid_each(path, value, names.is_valid_path_segment_name(value))


# ---------------------------------------------------------------- metadata


def _mask_trailing_dash(name: str) -> str:
    """A generateName may end in '-'; Go checks it with its last two characters replaced by "a"."""
    return name[:-2] + "a" if len(name) > 1 and name.endswith("-") else name


_NAME_CHECKS: dict[str, Callable[[str], list[str]]] = {
    "Namespace": names.is_dns1123_label,
    "Service": names.is_dns1035_label,
    # A StatefulSet's name is the stem of its pods' hostnames.
    "StatefulSet": names.is_dns1123_label,
    # ValidateRBACName: roles and bindings are named like "system:controller:x"
    "Role": names.is_valid_path_segment_name,
    "ClusterRole": names.is_valid_path_segment_name,
    "RoleBinding": names.is_valid_path_segment_name,
    "ClusterRoleBinding": names.is_valid_path_segment_name,
}


def _validate_metadata(kind: str, body: dict) -> list[Problem]:
    meta = _map(body.get("metadata"))
    path: FieldPath = ("metadata",)
    check = _NAME_CHECKS.get(kind, names.is_dns1123_subdomain)
    problems = []
    name = _str(meta.get("name"))
    generate_name = _str(meta.get("generateName"))
    if generate_name:
        problems += _invalid_each(path + ("generateName",), generate_name, check(_mask_trailing_dash(generate_name)))
    if name:
        problems += _check_name(path + ("name",), name, check)
    elif not generate_name:
        problems.append(_required(path + ("name",), "name or generateName is required"))
    # A namespace on a cluster-scoped object is dropped by the API server, not rejected.
    if BY_KIND[kind].namespaced:
        namespace = _str(meta.get("namespace"))
        if namespace:
            problems += _check_name(path + ("namespace",), namespace, names.is_dns1123_label)
    problems += _validate_labels(meta.get("labels"), path + ("labels",))
    problems += _validate_annotations(meta.get("annotations"), path + ("annotations",))
    return problems


# ---------------------------------------------------------------- pods and pod templates

_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_MAX_DNS_NAMESERVERS = 3
_MAX_DNS_SEARCH_PATHS = 32
_MAX_DNS_SEARCH_CHARS = 2048


def _validate_container_ports(ports: list, path: FieldPath) -> list[Problem]:
    """Port names are unique within one container only: across containers a duplicate is a mere warning."""
    problems = []
    seen: set[str] = set()
    for j, port in enumerate(ports):
        port = _map(port)
        port_path = path + (j,)
        name = _str(port.get("name"))
        if name:
            name_errors = names.is_iana_svc_name(name)
            if name_errors:
                problems += _invalid_each(port_path + ("name",), name, name_errors)
            elif name in seen:
                problems.append(_duplicate(port_path + ("name",), name))
            else:
                seen.add(name)
        container_port = _int(port.get("containerPort"))
        if not container_port:
            problems.append(_required(port_path + ("containerPort",)))
        else:
            problems += _check_port_number(port_path + ("containerPort",), container_port)
        host_port = _int(port.get("hostPort"))
        if host_port:  # 0 means "no host port"
            problems += _check_port_number(port_path + ("hostPort",), host_port)
        problems += _check_protocol(port_path + ("protocol",), port.get("protocol"))
    return problems


def _validate_container(container: dict, path: FieldPath) -> list[Problem]:
    problems = []
    name = _str(container.get("name"))
    if not name:
        problems.append(_required(path + ("name",)))
    else:
        problems += _check_name(path + ("name",), name, names.is_dns1123_label)
    if not _str(container.get("image")):
        problems.append(_required(path + ("image",)))
    pull_policy = container.get("imagePullPolicy")
    if pull_policy not in (None, "") and pull_policy not in _PULL_POLICIES:
        problems.append(_not_supported(path + ("imagePullPolicy",), pull_policy, _PULL_POLICIES))
    problems += _validate_container_ports(_list(container.get("ports")), path + ("ports",))
    return problems


def _validate_probe(probe: dict, path: FieldPath, probe_field: str) -> list[Problem]:
    problems = []
    handlers = 0
    for handler in _PROBE_HANDLERS:
        action = probe.get(handler)
        if action is None:
            continue
        handler_path = path + (handler,)
        if handlers:
            problems.append(_forbidden(handler_path, "may not specify more than 1 handler type"))
            continue
        handlers += 1
        action = _map(action)
        if handler == "exec":
            if not _list(action.get("command")):
                problems.append(_required(handler_path + ("command",)))
        elif handler == "httpGet":
            problems += _check_port_number_or_name(handler_path + ("port",), action.get("port"))
            scheme = action.get("scheme")
            if scheme not in (None, "") and scheme not in ("HTTP", "HTTPS"):
                problems.append(_not_supported(handler_path + ("scheme",), scheme, ("HTTP", "HTTPS")))
        elif handler == "tcpSocket":
            problems += _check_port_number_or_name(handler_path + ("port",), action.get("port"))
        else:
            port = _int(action.get("port"))
            problems += _check_port_number(handler_path + ("port",), 0 if port is None else port)
    if not handlers:
        problems.append(_required(path, "must specify a handler type"))
    for counter in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        problems += _check_nonnegative(path + (counter,), probe.get(counter))
    success = _int(probe.get("successThreshold"))
    # 0 is defaulted to 1; liveness and startup probes cannot require several successes.
    if probe_field != "readinessProbe" and success not in (None, 0, 1):
        problems.append(_invalid(path + ("successThreshold",), success, "must be 1"))
    grace = _int(probe.get("terminationGracePeriodSeconds"))
    if grace is not None and grace <= 0:
        problems.append(_invalid(path + ("terminationGracePeriodSeconds",), grace, "must be greater than 0"))
    return problems


def _validate_containers(spec: dict, path: FieldPath) -> list[Problem]:
    problems = []
    containers = _list(spec.get("containers"))
    if not containers:
        problems.append(_required(path + ("containers",)))
    seen: set[str] = set()
    for i, container in enumerate(containers):
        container = _map(container)
        container_path = path + ("containers", i)
        problems += _validate_container(container, container_path)
        for probe_field in _PROBES:
            probe = container.get(probe_field)
            if probe is not None:
                problems += _validate_probe(_map(probe), container_path + (probe_field,), probe_field)
        name = _str(container.get("name"))
        if name in seen:
            problems.append(_duplicate(container_path + ("name",), name))
        elif name:
            seen.add(name)
    # Init containers come second, so a name clash is reported on the init container.
    for i, container in enumerate(_list(spec.get("initContainers"))):
        container = _map(container)
        container_path = path + ("initContainers", i)
        problems += _validate_container(container, container_path)
        restart_policy = container.get("restartPolicy")
        if restart_policy is not None and restart_policy != "Always":
            problems.append(_not_supported(container_path + ("restartPolicy",), restart_policy, ("Always",)))
        for probe_field in _PROBES:
            probe = container.get(probe_field)
            if probe is None:
                continue
            if restart_policy == "Always":  # a sidecar
                problems += _validate_probe(_map(probe), container_path + (probe_field,), probe_field)
            else:
                problems.append(
                    _forbidden(container_path + (probe_field,), "may not be set for init containers without restartPolicy=Always")
                )
        name = _str(container.get("name"))
        if name in seen:
            problems.append(_duplicate(container_path + ("name",), name))
        elif name:
            seen.add(name)
    return problems


def _validate_host_network_ports(spec: dict, path: FieldPath) -> list[Problem]:
    """With hostNetwork the container listens on the node, so a hostPort other than containerPort
    cannot be honoured (an unset hostPort is defaulted to containerPort)."""
    if spec.get("hostNetwork") is not True:
        return []
    problems = []
    for containers_field in ("containers", "initContainers"):
        for i, container in enumerate(_list(spec.get(containers_field))):
            for j, port in enumerate(_list(_map(container).get("ports"))):
                port = _map(port)
                host_port = _int(port.get("hostPort"))
                if host_port and host_port != _int(port.get("containerPort")):
                    problems.append(
                        _invalid(
                            path + (containers_field, i, "ports", j, "hostPort"),
                            host_port,
                            "must match `containerPort` when `hostNetwork` is true",
                        )
                    )
    return problems


def _validate_dns(spec: dict, path: FieldPath) -> list[Problem]:
    problems = []
    policy = _str(spec.get("dnsPolicy")) or "ClusterFirst"
    if policy not in _DNS_POLICIES:
        problems.append(_not_supported(path + ("dnsPolicy",), policy, _DNS_POLICIES))
    config = spec.get("dnsConfig")
    config_path = path + ("dnsConfig",)
    if policy == "None":
        if not isinstance(config, dict):
            problems.append(_required(config_path, "must provide `dnsConfig` when `dnsPolicy` is None"))
            return problems
        if not _list(config.get("nameservers")):
            problems.append(
                _required(config_path + ("nameservers",), "must provide at least one DNS nameserver when `dnsPolicy` is None")
            )
            return problems
    if not isinstance(config, dict):
        return problems
    nameservers = _list(config.get("nameservers"))
    if len(nameservers) > _MAX_DNS_NAMESERVERS:
        problems.append(
            _invalid(config_path + ("nameservers",), nameservers, f"must not have more than {_MAX_DNS_NAMESERVERS} nameservers")
        )
    for i, server in enumerate(nameservers):
        text = _str(server)
        problems += _invalid_each(config_path + ("nameservers", i), text, names.is_valid_ip(text))
    searches = [_str(search) for search in _list(config.get("searches"))]
    if len(searches) > _MAX_DNS_SEARCH_PATHS:
        problems.append(
            _invalid(config_path + ("searches",), searches, f"must not have more than {_MAX_DNS_SEARCH_PATHS} search paths")
        )
    if len(" ".join(searches)) > _MAX_DNS_SEARCH_CHARS:
        problems.append(
            _invalid(
                config_path + ("searches",),
                searches,
                f"must not have more than {_MAX_DNS_SEARCH_CHARS} characters (including spaces) in the search list",
            )
        )
    for i, search in enumerate(searches):
        if search == ".":  # "search nothing", allowed since RelaxedDNSSearchValidation
            continue
        domain = search.removesuffix(".")
        problems += _check_name(config_path + ("searches", i), domain, names.is_dns1123_subdomain_with_underscore)
    for i, option in enumerate(_list(config.get("options"))):
        if not _str(_map(option).get("name")):
            problems.append(_required(config_path + ("options", i), "Option.Name must not be empty"))
    return problems


def _validate_pod_spec(spec: dict, path: FieldPath) -> list[Problem]:
    problems = _validate_containers(spec, path)
    problems += _validate_host_network_ports(spec, path)
    problems += _validate_dns(spec, path)
    restart_policy = spec.get("restartPolicy")
    if restart_policy not in (None, "") and restart_policy not in _RESTART_POLICIES:
        problems.append(_not_supported(path + ("restartPolicy",), restart_policy, _RESTART_POLICIES))
    for field_name in ("hostname", "subdomain"):
        value = _str(spec.get(field_name))
        if value:
            problems += _check_name(path + (field_name,), value, names.is_dns1123_label)
    node_name = _str(spec.get("nodeName"))
    if node_name:
        problems += _check_name(path + ("nodeName",), node_name, names.is_dns1123_subdomain)
    problems += _validate_labels(spec.get("nodeSelector"), path + ("nodeSelector",))
    for i, alias in enumerate(_list(spec.get("hostAliases"))):
        alias = _map(alias)
        alias_path = path + ("hostAliases", i)
        ip = _str(alias.get("ip"))
        problems += _invalid_each(alias_path + ("ip",), ip, names.is_valid_ip(ip))
        for j, hostname in enumerate(_list(alias.get("hostnames"))):
            text = _str(hostname)
            problems += _check_name(alias_path + ("hostnames", j), text, names.is_dns1123_subdomain)
    return problems


def _validate_pod(body: dict) -> list[Problem]:
    return _validate_pod_spec(_map(body.get("spec")), ("spec",))


# ---------------------------------------------------------------- workloads


def _validate_workload(body: dict, kind: str, selector_noun: str) -> list[Problem]:
    """Deployment, ReplicaSet, StatefulSet and DaemonSet: selector, template, replicas."""
    spec = _map(body.get("spec"))
    path: FieldPath = ("spec",)
    problems = []
    if kind != "DaemonSet":
        problems += _check_nonnegative(path + ("replicas",), spec.get("replicas"))
    selector = spec.get("selector")
    compiled = None
    if not isinstance(selector, dict):
        problems.append(_required(path + ("selector",)))
    else:
        selector_problems = validate_label_selector(selector, path + ("selector",))
        problems += selector_problems
        if not _map(selector.get("matchLabels")) and not _list(selector.get("matchExpressions")):
            problems.append(_invalid(path + ("selector",), selector, f"empty selector is invalid for {selector_noun}"))
        elif not selector_problems:
            try:
                compiled = labels.from_label_selector(selector)
            except ValueError:  # only for values of the wrong type, which the schema check rejects
                compiled = None
    template = _map(spec.get("template"))
    template_path = path + ("template",)
    template_meta = _map(template.get("metadata"))
    labels_path = template_path + ("metadata", "labels")
    template_labels = _map(template_meta.get("labels"))
    if compiled is not None and not compiled.matches(template_labels):
        problems.append(_invalid(labels_path, template_labels, "`selector` does not match template `labels`"))
    problems += _validate_labels(template_labels, labels_path)
    problems += _validate_annotations(template_meta.get("annotations"), template_path + ("metadata", "annotations"))
    template_spec = _map(template.get("spec"))
    template_spec_path = template_path + ("spec",)
    problems += _validate_pod_spec(template_spec, template_spec_path)
    restart_policy = template_spec.get("restartPolicy")
    if restart_policy not in (None, "", "Always"):
        problems.append(_not_supported(template_spec_path + ("restartPolicy",), restart_policy, ("Always",)))
    if template_spec.get("activeDeadlineSeconds") is not None:
        deadline_owner = "ReplicaSet" if kind == "Deployment" else kind
        problems.append(
            _forbidden(
                template_spec_path + ("activeDeadlineSeconds",),
                f"activeDeadlineSeconds in {deadline_owner} is not Supported",
            )
        )
    return problems


def _validate_deployment(body: dict) -> list[Problem]:
    return _validate_workload(body, "Deployment", "deployment")


def _validate_replica_set(body: dict) -> list[Problem]:
    # The API server says "deployment" for ReplicaSets too.
    return _validate_workload(body, "ReplicaSet", "deployment")


def _validate_daemon_set(body: dict) -> list[Problem]:
    return _validate_workload(body, "DaemonSet", "daemonset")


def _validate_job(body: dict) -> list[Problem]:
    """ValidateJob's checks podnet relies on: a pod template that ends (restartPolicy OnFailure or
    Never: a Job's pod never finishes with Always), counts not negative."""
    spec = _map(body.get("spec"))
    path = ("spec", "template", "spec")
    template_spec = _map(_map(spec.get("template")).get("spec"))
    problems = _validate_pod_spec(template_spec, path)
    policy = template_spec.get("restartPolicy")
    if policy in (None, ""):
        problems.append(_required(path + ("restartPolicy",), 'supported values: "OnFailure", "Never"'))
    elif policy not in ("OnFailure", "Never"):
        problems.append(_not_supported(path + ("restartPolicy",), policy, ("OnFailure", "Never")))
    for field in ("parallelism", "completions", "backoffLimit"):
        problems += _check_nonnegative(("spec", field), spec.get(field))
    return problems


def _validate_stateful_set(body: dict) -> list[Problem]:
    problems = _validate_workload(body, "StatefulSet", "statefulset")
    spec = _map(body.get("spec"))
    policy = spec.get("podManagementPolicy")
    if policy not in (None, "", "OrderedReady", "Parallel"):
        problems.append(_invalid(("spec", "podManagementPolicy"), policy, "must be 'OrderedReady' or 'Parallel'"))
    service_name = _str(spec.get("serviceName"))
    if service_name:  # the governing Service: its name is part of every pod's DNS name
        problems += _check_name(("spec", "serviceName"), service_name, names.is_dns1123_label)
    return problems


# ---------------------------------------------------------------- Service

_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
_SESSION_AFFINITIES = ("ClientIP", "None")
_TRAFFIC_POLICIES = ("Cluster", "Local")
_IP_FAMILIES = ("IPv4", "IPv6")
_IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
_TRAFFIC_DISTRIBUTIONS = ("PreferClose", "PreferSameZone", "PreferSameNode")
_MAX_AFFINITY_TIMEOUT = 86400


def _validate_service_ports(spec: dict, service_type: str) -> list[Problem]:
    ports = _list(spec.get("ports"))
    problems = []
    seen_names: set[str] = set()
    seen_ports: set[tuple[str, int]] = set()
    seen_node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        port = _map(port)
        port_path: FieldPath = ("spec", "ports", i)
        name = _str(port.get("name"))
        if not name and len(ports) > 1:
            problems.append(_required(port_path + ("name",)))
        elif name:
            problems += _check_name(port_path + ("name",), name, names.is_dns1123_label)
            if name in seen_names:
                problems.append(_duplicate(port_path + ("name",), name))
            seen_names.add(name)
        number = _int(port.get("port")) or 0
        problems += _check_port_number(port_path + ("port",), number)
        problems += _check_protocol(port_path + ("protocol",), port.get("protocol"))
        protocol = _str(port.get("protocol")) or DEFAULT_PROTOCOL
        target = port.get("targetPort")
        if target not in (None, 0, ""):  # unset targetPort is defaulted to port
            problems += _check_port_number_or_name(port_path + ("targetPort",), target)
        app_protocol = port.get("appProtocol")
        if isinstance(app_protocol, str):
            problems += _check_name(port_path + ("appProtocol",), app_protocol, names.is_qualified_name)
        node_port = _int(port.get("nodePort")) or 0
        if node_port:
            if service_type == "ClusterIP":
                problems.append(_forbidden(port_path + ("nodePort",), "may not be used when `type` is 'ClusterIP'"))
            # Only the port's syntax; whether it is in the cluster's node port range is checked on allocation.
            problems += _invalid_each(port_path + ("nodePort",), node_port, names.is_in_range(node_port, 0, 65535))
            if (protocol, node_port) in seen_node_ports:
                problems.append(_duplicate(port_path + ("nodePort",), node_port))
            seen_node_ports.add((protocol, node_port))
        if (protocol, number) in seen_ports:
            problems.append(_duplicate(port_path, {"port": number, "protocol": protocol}))
        seen_ports.add((protocol, number))
    return problems


def _validate_cluster_ips(spec: dict) -> list[Problem]:
    """ValidateServiceClusterIPsRelatedFields, for a Service that is not ExternalName."""
    problems = []
    cluster_ip = _str(spec.get("clusterIP"))
    given_ips = [_str(ip) for ip in _list(spec.get("clusterIPs"))]
    ips = given_ips or ([cluster_ip] if cluster_ip else [])
    ips_path: FieldPath = ("spec", "clusterIPs")

    def ip_path(index: int) -> FieldPath:
        return ips_path + (index,) if given_ips else ("spec", "clusterIP")

    if cluster_ip:
        if given_ips and given_ips[0] != cluster_ip:
            problems.append(_invalid(ips_path, given_ips, "first value must match `clusterIP`"))
    elif given_ips:
        problems.append(_invalid(ips_path, given_ips, "must be empty when `clusterIP` is not specified"))

    families = [_str(family) for family in _list(spec.get("ipFamilies"))]
    for i, family in enumerate(families):
        if family not in _IP_FAMILIES:
            problems.append(_not_supported(("spec", "ipFamilies", i), family, _IP_FAMILIES))
        if family in families[:i]:
            problems.append(_duplicate(("spec", "ipFamilies", i), family))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in _IP_FAMILY_POLICIES:
        problems.append(_not_supported(("spec", "ipFamilyPolicy"), policy, _IP_FAMILY_POLICIES))

    has_invalid_ip = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                has_invalid_ip = True
                problems.append(_invalid(ips_path, ips, "'None' must be the first and only value"))
            continue
        ip_errors = names.is_valid_ip(ip)
        if ip_errors:
            has_invalid_ip = True
            problems += _invalid_each(ip_path(i), ip, ip_errors)
    if len(ips) > 2:
        problems.append(_invalid(ips_path, ips, "may only hold up to 2 values"))
    if has_invalid_ip:
        return problems  # family checks would only restate a bad address

    if len(ips) > 1:
        ipv6_count = sum(_is_ipv6(ip) for ip in ips)
        if ipv6_count in (0, len(ips)):
            problems.append(_invalid(ips_path, ips, "may specify no more than one IP for each IP family"))
    if ips != ["None"]:
        for i, (ip, family) in enumerate(zip(ips, families)):
            if family == "IPv4" and _is_ipv6(ip):
                problems.append(_invalid(ip_path(i), ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if family == "IPv6" and not _is_ipv6(ip):
                problems.append(_invalid(ip_path(i), ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return problems


def _validate_service(body: dict) -> list[Problem]:
    spec = _map(body.get("spec"))
    path: FieldPath = ("spec",)
    problems = []
    service_type = _str(spec.get("type")) or api_defaults.SERVICE_TYPE
    if service_type not in _SERVICE_TYPES:
        problems.append(_not_supported(path + ("type",), service_type, _SERVICE_TYPES))

    cluster_ip = _str(spec.get("clusterIP"))
    given_ips = [_str(ip) for ip in _list(spec.get("clusterIPs"))]
    ips = given_ips or ([cluster_ip] if cluster_ip else [])
    first_ip_path = path + ("clusterIPs", 0) if given_ips else path + ("clusterIP",)
    headless = ips == ["None"]

    if not _list(spec.get("ports")) and not headless and service_type != "ExternalName":
        problems.append(_required(path + ("ports",)))
    if service_type in ("LoadBalancer", "NodePort") and headless:
        problems.append(_invalid(first_ip_path, "None", f"may not be set to 'None' for {service_type} services"))
    if service_type == "ExternalName":
        if ips:
            ips_field = "clusterIPs" if given_ips else "clusterIP"
            problems.append(_forbidden(path + (ips_field,), "may not be set for ExternalName services"))
        if _list(spec.get("ipFamilies")):
            problems.append(_forbidden(path + ("ipFamilies",), "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            problems.append(_forbidden(path + ("ipFamilyPolicy",), "may not be set for ExternalName services"))
        cname = _str(spec.get("externalName")).removesuffix(".")  # a trailing dot marks it fully qualified
        if cname:
            problems += _check_name(path + ("externalName",), cname, names.is_dns1123_subdomain)
        else:
            problems.append(_required(path + ("externalName",)))
    else:
        problems += _validate_cluster_ips(spec)

    problems += _validate_service_ports(spec, service_type)
    if spec.get("selector") is not None:
        problems += _validate_labels(spec.get("selector"), path + ("selector",))

    affinity = _str(spec.get("sessionAffinity")) or api_defaults.SESSION_AFFINITY
    if affinity not in _SESSION_AFFINITIES:
        problems.append(_not_supported(path + ("sessionAffinity",), affinity, _SESSION_AFFINITIES))
    if affinity == "ClientIP":
        client_ip = _map(_map(spec.get("sessionAffinityConfig")).get("clientIP"))
        timeout = _int(client_ip.get("timeoutSeconds"))
        if timeout is not None and not 0 < timeout <= _MAX_AFFINITY_TIMEOUT:
            problems.append(
                _invalid(
                    path + ("sessionAffinityConfig", "clientIP", "timeoutSeconds"),
                    timeout,
                    f"must be greater than 0 and less than {_MAX_AFFINITY_TIMEOUT}",
                )
            )

    external_ips = _list(spec.get("externalIPs"))
    for i, ip in enumerate(external_ips):
        problems += _check_endpoint_ip(path + ("externalIPs", i), _str(ip))

    source_ranges = _list(spec.get("loadBalancerSourceRanges"))
    if source_ranges:
        if service_type != "LoadBalancer":
            problems.append(
                _forbidden(path + ("loadBalancerSourceRanges",), "may only be used when `type` is 'LoadBalancer'")
            )
        for i, cidr in enumerate(source_ranges):
            text = _str(cidr).strip()  # historically space-padded values are accepted
            problems += _invalid_each(path + ("loadBalancerSourceRanges", i), text, names.is_valid_cidr(text))
    if spec.get("allocateLoadBalancerNodePorts") is not None and service_type != "LoadBalancer":
        problems.append(
            _forbidden(path + ("allocateLoadBalancerNodePorts",), "may only be used when `type` is 'LoadBalancer'")
        )
    lb_class = spec.get("loadBalancerClass")
    if lb_class is not None:
        if service_type == "LoadBalancer":
            problems += _check_name(path + ("loadBalancerClass",), _str(lb_class), names.is_qualified_name)
        else:
            problems.append(_forbidden(path + ("loadBalancerClass",), "may only be used when `type` is 'LoadBalancer'"))

    external_policy = _str(spec.get("externalTrafficPolicy"))
    externally_accessible = service_type in ("LoadBalancer", "NodePort") or (
        service_type == "ClusterIP" and bool(external_ips)
    )
    if external_policy:
        if not externally_accessible:
            problems.append(
                _invalid(
                    path + ("externalTrafficPolicy",),
                    external_policy,
                    "may only be set for externally-accessible services",
                )
            )
        elif external_policy not in _TRAFFIC_POLICIES:
            problems.append(_not_supported(path + ("externalTrafficPolicy",), external_policy, _TRAFFIC_POLICIES))
    health_port = _int(spec.get("healthCheckNodePort")) or 0
    if health_port:
        if service_type == "LoadBalancer" and external_policy == "Local":
            problems += _check_port_number(path + ("healthCheckNodePort",), health_port)
        else:
            problems.append(
                _invalid(
                    path + ("healthCheckNodePort",),
                    health_port,
                    "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                )
            )
    internal_policy = spec.get("internalTrafficPolicy")
    if internal_policy is not None and internal_policy not in _TRAFFIC_POLICIES:
        problems.append(_not_supported(path + ("internalTrafficPolicy",), internal_policy, _TRAFFIC_POLICIES))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution not in _TRAFFIC_DISTRIBUTIONS:
        problems.append(_not_supported(path + ("trafficDistribution",), distribution, _TRAFFIC_DISTRIBUTIONS))
    return problems


# ---------------------------------------------------------------- NetworkPolicy

_NETWORK_POLICY_PROTOCOLS = ("TCP", "UDP", "SCTP")
_POLICY_TYPES = ("Ingress", "Egress")


def _validate_network_policy_port(port: dict, path: FieldPath) -> list[Problem]:
    problems = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in _NETWORK_POLICY_PROTOCOLS:
        problems.append(_not_supported(path + ("protocol",), protocol, _NETWORK_POLICY_PROTOCOLS))
    number_or_name = port.get("port")
    end_port = _int(port.get("endPort"))
    end_path = path + ("endPort",)
    if number_or_name is None:
        if end_port is not None:
            problems.append(_invalid(end_path, end_port, "may not be specified when `port` is not specified"))
    elif isinstance(number_or_name, str):
        if end_port is not None:
            problems.append(_invalid(end_path, end_port, "may not be specified when `port` is non-numeric"))
        problems += _invalid_each(path + ("port",), number_or_name, names.is_iana_svc_name(number_or_name))
    else:
        number = _int(number_or_name) or 0
        problems += _check_port_number(path + ("port",), number)
        if end_port is not None:
            if end_port < number:
                problems.append(_invalid(end_path, end_port, "must be greater than or equal to `port`"))
            problems += _check_port_number(end_path, end_port)
    return problems


def _validate_ip_block(block: dict, path: FieldPath) -> list[Problem]:
    cidr = _str(block.get("cidr"))
    if not cidr:
        return [_required(path + ("cidr",))]
    network = names.parse_cidr(cidr)
    if network is None:
        return [_invalid(path + ("cidr",), cidr, names.CIDR_ERROR)]
    problems = []
    for i, entry in enumerate(_list(block.get("except"))):
        text = _str(entry)
        except_path = path + ("except", i)
        excluded = names.parse_cidr(text)
        if excluded is None:
            problems.append(_invalid(except_path, text, names.CIDR_ERROR))
        elif (
            excluded.version != network.version
            or excluded.network_address not in network
            or excluded.prefixlen <= network.prefixlen
        ):
            problems.append(_invalid(except_path, text, "must be a strict subset of `cidr`"))
    return problems


def _validate_network_policy_peer(peer: dict, path: FieldPath) -> list[Problem]:
    problems = []
    present = 0
    for selector_field in ("podSelector", "namespaceSelector"):
        if peer.get(selector_field) is not None:
            present += 1
            problems += validate_label_selector(peer[selector_field], path + (selector_field,))
    has_ip_block = peer.get("ipBlock") is not None
    if has_ip_block:
        present += 1
        problems += _validate_ip_block(_map(peer["ipBlock"]), path + ("ipBlock",))
    if not present:
        problems.append(_required(path, "must specify a peer"))
    elif present > 1 and has_ip_block:
        problems.append(_forbidden(path, "may not specify both ipBlock and another peer"))
    return problems


def _validate_network_policy(body: dict) -> list[Problem]:
    spec = _map(body.get("spec"))
    path: FieldPath = ("spec",)
    problems = validate_label_selector(spec.get("podSelector"), path + ("podSelector",))
    for direction, peers_field in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_list(spec.get(direction))):
            rule = _map(rule)
            rule_path = path + (direction, i)
            for j, port in enumerate(_list(rule.get("ports"))):
                problems += _validate_network_policy_port(_map(port), rule_path + ("ports", j))
            for j, peer in enumerate(_list(rule.get(peers_field))):
                problems += _validate_network_policy_peer(_map(peer), rule_path + (peers_field, j))
    policy_types = _list(spec.get("policyTypes"))
    if len(policy_types) > len(_POLICY_TYPES):
        problems.append(_invalid(path + ("policyTypes",), policy_types, "may not specify more than two policyTypes"))
    else:
        for i, policy_type in enumerate(policy_types):
            if policy_type not in _POLICY_TYPES:
                problems.append(_not_supported(path + ("policyTypes", i), policy_type, _POLICY_TYPES))
    return problems


# ---------------------------------------------------------------- AdminNetworkPolicy and BaselineAdminNetworkPolicy
# podnet's own schema (api/schemas) holds the CRD's structure: required fields, types, enums,
# limits and its exactly-one-of fields. Here are its CEL rules and what a CRD cannot say.

_ADMIN_POLICY_PROTOCOLS = ("TCP", "UDP", "SCTP")
_BASELINE_POLICY_NAME = "default"
_DOMAIN_NAMES_UNSUPPORTED = (
    "podnet does not support domainNames peers (experimental in policy.networking.k8s.io); "
    "nothing would enforce this rule: use networks with the addresses instead"
)


def _validate_namespaced_pod(pods: dict, path: FieldPath) -> list[Problem]:
    return validate_label_selector(pods.get("namespaceSelector"), path + ("namespaceSelector",)) + \
        validate_label_selector(pods.get("podSelector"), path + ("podSelector",))


def _validate_admin_policy_peer(peer: dict, path: FieldPath) -> list[Problem]:
    """A subject or a peer: the schema has already made sure exactly one field is set."""
    problems = []
    for selector_field in ("namespaces", "nodes"):
        problems += validate_label_selector(peer.get(selector_field), path + (selector_field,))
    if isinstance(peer.get("pods"), dict):
        problems += _validate_namespaced_pod(peer["pods"], path + ("pods",))
    for i, cidr in enumerate(_list(peer.get("networks"))):
        text = _str(cidr)
        if names.parse_cidr(text) is None:  # the CRD's isCIDR(): IPv4 or IPv6, host bits allowed
            problems.append(_invalid(path + ("networks", i), text, names.CIDR_ERROR))
    if peer.get("domainNames") is not None:
        problems.append(_forbidden(path + ("domainNames",), _DOMAIN_NAMES_UNSUPPORTED))
    return problems


def _validate_admin_policy_port(port: dict, path: FieldPath) -> list[Problem]:
    problems = []
    for form in ("portNumber", "portRange"):
        if isinstance(port.get(form), dict):
            protocol = port[form].get("protocol")
            if protocol is not None and protocol not in _ADMIN_POLICY_PROTOCOLS:
                problems.append(_not_supported(path + (form, "protocol"), protocol, _ADMIN_POLICY_PROTOCOLS))
    port_range = _map(port.get("portRange"))
    start, end = _int(port_range.get("start")), _int(port_range.get("end"))
    if start is not None and end is not None and end <= start:
        problems.append(_invalid(path + ("portRange", "end"), end, "must be greater than `start`"))
    return problems


def _validate_admin_policy_rules(spec: dict, kind: str) -> list[Problem]:
    problems = []
    # The CRD's CEL rule on an egress rule: addresses outside the cluster have no named ports.
    address_peers = ("networks", "nodes") if kind == "BaselineAdminNetworkPolicy" else ("networks", "nodes", "domainNames")
    no_named_ports = (
        f"{'/'.join(address_peers)} peer cannot be set with namedPorts since there are no namedPorts for "
        f"{'/'.join(address_peers)}"
    )
    for direction, peers_field in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_list(spec.get(direction))):
            rule = _map(rule)
            rule_path: FieldPath = ("spec", direction, i)
            peers = [_map(peer) for peer in _list(rule.get(peers_field))]
            for j, peer in enumerate(peers):
                problems += _validate_admin_policy_peer(peer, rule_path + (peers_field, j))
            to_addresses = any(peer.get(field) is not None for peer in peers for field in address_peers)
            for j, port in enumerate(_list(rule.get("ports"))):
                port = _map(port)
                problems += _validate_admin_policy_port(port, rule_path + ("ports", j))
                if direction == "egress" and to_addresses and port.get("namedPort") is not None:
                    problems.append(_forbidden(rule_path + ("ports", j, "namedPort"), no_named_ports))
    return problems


def _validate_admin_policy_spec(spec: dict, kind: str) -> list[Problem]:
    problems = []
    if isinstance(spec.get("subject"), dict):
        problems += _validate_admin_policy_peer(spec["subject"], ("spec", "subject"))
    return problems + _validate_admin_policy_rules(spec, kind)


# ---------------------------------------------------------------- Istio: AuthorizationPolicy, PeerAuthentication
# istio/istio's validation webhook (pkg/config/validation ValidateAuthorizationPolicy,
# ValidatePeerAuthentication; pkg/config/security ValidateAttribute), worded as podnet words fields

_MESH_WHEN_KEYS = ("source.ip", "remote.ip", "source.namespace", "source.principal", "source.serviceAccount",
                   "source.trustDomain", "request.auth.principal", "request.auth.audiences", "request.auth.presenter",
                   "destination.ip", "destination.port", "connection.sni")
_MESH_MAP_KEYS = ("request.headers", "request.auth.claims")
# fields an external authorizer (CUSTOM) may not use: it sees no verified identity
_CUSTOM_FORBIDDEN = ("principals", "notPrincipals", "namespaces", "notNamespaces", "requestPrincipals",
                     "notRequestPrincipals", "serviceAccounts", "notServiceAccounts")
_CUSTOM_FORBIDDEN_KEYS = ("source.namespace", "source.principal", "source.serviceAccount", "source.trustDomain")


def _validate_mesh_selector(spec: dict, path: FieldPath) -> list[Problem]:
    problems = []
    for key, value in _map(_map(spec.get("selector")).get("matchLabels")).items():
        where = path + ("selector", "matchLabels", key)
        if not key:
            problems.append(_invalid(where, key, "a label name may not be empty"))
        elif "*" in key or "*" in _str(value):
            problems.append(_invalid(where, value, "wildcard is not supported in selector"))
    return problems


def _mesh_port(path: FieldPath, value: Any, lowest: int = 0) -> list[Problem]:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not re.fullmatch(r"[0-9]{1,5}", text) or not lowest <= int(text) <= 65535:  # (ASCII digits, as ParseUint)
        return [_invalid(path, value, f"must be a port number between {lowest} and 65535")]
    return []


def _mesh_ip_block(path: FieldPath, value: str) -> list[Problem]:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return [_invalid(path, value, "must be an IP address or a CIDR")]
    return []


def _validate_mesh_values(values: Any, path: FieldPath, field: str) -> list[Problem]:
    problems = []
    for index, value in enumerate(_list(values)):
        where = path + (index,)
        if not isinstance(value, str) or value == "":
            problems.append(_invalid(where, value, "empty value is not allowed"))
        elif field in ("ports", "notPorts"):
            problems += _mesh_port(where, value)
        elif field in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
            problems += _mesh_ip_block(where, value)
        elif field in ("paths", "notPaths") and ("{" in value or "}" in value):
            segments = value.rstrip("/").split("/")
            if any(("{" in seg or "}" in seg) and seg not in ("{*}", "{**}") for seg in segments) or \
                    any(seg == "{**}" for seg in segments[:-1]) or "*" in value.replace("{*}", "").replace("{**}", ""):
                problems.append(_invalid(where, value, "{*} and {**} must be whole segments, {**} the last, "
                                                      "and no other * in a template"))
    return problems


def _validate_mesh_condition(condition: dict, path: FieldPath, custom: bool) -> list[Problem]:
    key = _str(condition.get("key"))
    if not key:
        return [_required(path + ("key",))]
    problems = []
    base = key.split("[", 1)[0]
    if key.startswith("experimental.envoy.filters."):
        problems.append(_invalid(path + ("key",), key, "podnet's proxies do not support Envoy filter metadata"))
    elif base in _MESH_MAP_KEYS:
        if not key.endswith("]") or "[" not in key or key.endswith("[]"):
            problems.append(_invalid(path + ("key",), key, "must be of the form a[b]"))
    elif key not in _MESH_WHEN_KEYS:
        problems.append(_invalid(path + ("key",), key, "unknown attribute"))
    if custom and (key in _CUSTOM_FORBIDDEN_KEYS or key.startswith("request.auth.")):
        problems.append(_forbidden(path + ("key",), f"{key} is not supported with action CUSTOM"))
    if not _list(condition.get("values")) and not _list(condition.get("notValues")):
        problems.append(_required(path + ("values",), "at least one of values or notValues must be set"))
    for field in ("values", "notValues"):
        for index, value in enumerate(_list(condition.get(field))):
            if not isinstance(value, str) or value == "":
                problems.append(_invalid(path + (field, index), value, "empty value is not allowed"))
            elif key == "destination.port":
                problems += _mesh_port(path + (field, index), value)
            elif key in ("source.ip", "remote.ip", "destination.ip"):
                problems += _mesh_ip_block(path + (field, index), value)
    return problems


def _validate_authorization_policy(body: dict) -> list[Problem]:
    spec = _map(body.get("spec"))
    action = _str(spec.get("action")) or "ALLOW"
    custom = action == "CUSTOM"
    problems = _validate_mesh_selector(spec, ("spec",))
    if spec.get("selector") is not None and (spec.get("targetRef") or spec.get("targetRefs")):
        problems.append(_forbidden(("spec", "targetRefs"), "only one of selector or targetRefs can be set"))
    if spec.get("provider") is not None and not custom:
        problems.append(_forbidden(("spec", "provider"), "a provider is only allowed with action CUSTOM"))
    if custom and not _str(_map(spec.get("provider")).get("name")):
        problems.append(_required(("spec", "provider", "name"), "action CUSTOM needs a provider name"))
    rules = spec.get("rules")
    if action in ("DENY", "CUSTOM") and not _list(rules):
        problems.append(_required(("spec", "rules"), f"a {action} policy needs at least one rule "
                                                     "(without rules it would never match)"))
    for index, rule in enumerate(_list(rules)):
        path = ("spec", "rules", index)
        if not isinstance(rule, dict):
            problems.append(_invalid(path, rule, "a rule may not be null"))
            continue
        for part, inner in (("from", "source"), ("to", "operation")):
            entries = rule.get(part)
            if entries is not None and not _list(entries):
                problems.append(_invalid(path + (part,), entries, f"{part} must not be empty when present"))
            for number, entry in enumerate(_list(entries)):
                fields = _map(_map(entry).get(inner))
                where = path + (part, number, inner)
                if not any(_list(values) for values in fields.values()):
                    problems.append(_required(where, f"{inner} must set at least one field"))
                for field, values in fields.items():
                    problems += _validate_mesh_values(values, where + (field,), field)
                    if custom and field in _CUSTOM_FORBIDDEN and _list(values):
                        problems.append(_forbidden(where + (field,), f"{field} is not supported with action CUSTOM"))
                if fields.get("serviceAccounts") and (fields.get("principals") or fields.get("namespaces")):
                    problems.append(_forbidden(where + ("serviceAccounts",),
                                               "cannot be set with principals or namespaces"))
        for number, condition in enumerate(_list(rule.get("when"))):
            problems += _validate_mesh_condition(_map(condition), path + ("when", number), custom)
    return problems


def _validate_peer_authentication(body: dict) -> list[Problem]:
    spec = _map(body.get("spec"))
    problems = _validate_mesh_selector(spec, ("spec",))
    ports = spec.get("portLevelMtls")
    if ports is not None:
        if not _map(_map(spec.get("selector")).get("matchLabels")):
            problems.append(_forbidden(("spec", "portLevelMtls"),
                                       "mesh and namespace PeerAuthentication cannot have port level mTLS "
                                       "(it needs a selector)"))
        for port in _map(ports):
            problems += _mesh_port(("spec", "portLevelMtls", port), port, lowest=1)
    return problems


def _validate_admin_network_policy(body: dict) -> list[Problem]:
    return _validate_admin_policy_spec(_map(body.get("spec")), "AdminNetworkPolicy")


def _validate_baseline_admin_network_policy(body: dict) -> list[Problem]:
    problems = []
    name = _str(_map(body.get("metadata")).get("name"))
    if name != _BASELINE_POLICY_NAME:  # the CRD's CEL rule: one baseline for the whole cluster
        problems.append(_invalid(("metadata", "name"), name, "Only one baseline admin network policy with "
                                 'metadata.name="default" can be created in the cluster'))
    return problems + _validate_admin_policy_spec(_map(body.get("spec")), "BaselineAdminNetworkPolicy")


# ---------------------------------------------------------------- Ingress and IngressClass

_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")
_INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
_MAX_CONTROLLER_LENGTH = 250


def _validate_object_reference(reference: dict, path: FieldPath) -> list[Problem]:
    """A TypedLocalObjectReference (resource backends, IngressClass parameters)."""
    problems = []
    api_group = reference.get("apiGroup")
    if api_group is not None:
        problems += _check_name(path + ("apiGroup",), _str(api_group), names.is_dns1123_subdomain)
    for field_name in ("kind", "name"):
        value = _str(reference.get(field_name))
        if not value:
            problems.append(_required(path + (field_name,), f"{field_name} is required"))
        else:
            problems += _check_path_segment(path + (field_name,), value)
    return problems


def _validate_ingress_backend(backend: dict, path: FieldPath) -> list[Problem]:
    resource = backend.get("resource")
    service = backend.get("service")
    if resource is not None and service is not None:
        return [_invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return _validate_object_reference(_map(resource), path + ("resource",))
    if service is None:
        return [_invalid(path, "", "resource or service backend is required")]
    service = _map(service)
    problems = []
    name = _str(service.get("name"))
    if not name:
        problems.append(_required(path + ("service", "name")))
    else:
        problems += _check_name(path + ("service", "name"), name, names.is_dns1035_label)
    port = _map(service.get("port"))
    port_name = _str(port.get("name"))
    port_number = _int(port.get("number")) or 0
    if port_name and port_number:
        problems.append(_invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        problems += _invalid_each(path + ("service", "port", "name"), port_name, names.is_iana_svc_name(port_name))
    elif port_number:
        problems += _check_port_number(path + ("service", "port", "number"), port_number)
    else:
        problems.append(_required(path, "port name or number is required"))
    return problems


def _validate_ingress_path(http_path: dict, path: FieldPath) -> list[Problem]:
    path_type = http_path.get("pathType")
    if path_type is None:
        return [_required(path + ("pathType",), "pathType must be specified")]
    problems = []
    text = _str(http_path.get("path"))
    text_path = path + ("path",)
    if path_type in ("Exact", "Prefix"):
        if not text.startswith("/"):
            problems.append(_invalid(text_path, text, "must be an absolute path"))
        problems += [_invalid(text_path, text, f"must not contain '{seq}'") for seq in _INVALID_PATH_SEQUENCES if seq in text]
        problems += [
            _invalid(text_path, text, f"cannot end with '{suffix}'")
            for suffix in _INVALID_PATH_SUFFIXES
            if text.endswith(suffix)
        ]
    elif path_type == "ImplementationSpecific":
        if text and not text.startswith("/"):
            problems.append(_invalid(text_path, text, "must be an absolute path"))
    else:
        problems.append(_not_supported(path + ("pathType",), path_type, _PATH_TYPES))
    problems += _validate_ingress_backend(_map(http_path.get("backend")), path + ("backend",))
    return problems


def _check_host(path: FieldPath, host: str) -> list[Problem]:
    """A host name, possibly `*.` + subdomain; the wildcard check is used as soon as there is a '*'."""
    if "*" in host:
        return _invalid_each(path, host, names.is_wildcard_dns1123_subdomain(host))
    return _invalid_each(path, host, names.is_dns1123_subdomain(host))


def _validate_ingress(body: dict) -> list[Problem]:
    spec = _map(body.get("spec"))
    path: FieldPath = ("spec",)
    problems = []
    rules = _list(spec.get("rules"))
    default_backend = spec.get("defaultBackend")
    if not rules and default_backend is None:
        problems.append(_invalid(path, spec.get("rules"), "either `defaultBackend` or `rules` must be specified"))
    if default_backend is not None:
        problems += _validate_ingress_backend(_map(default_backend), path + ("defaultBackend",))
    for i, rule in enumerate(rules):
        rule = _map(rule)
        rule_path = path + ("rules", i)
        host = _str(rule.get("host"))
        if host:
            if names.parse_ip(host) is not None:
                problems.append(_invalid(rule_path + ("host",), host, "must be a DNS name, not an IP address"))
            problems += _check_host(rule_path + ("host",), host)
        http = rule.get("http")
        if http is not None:
            http_paths = _list(_map(http).get("paths"))
            if not http_paths:
                problems.append(_required(rule_path + ("http", "paths")))
            for j, http_path in enumerate(http_paths):
                problems += _validate_ingress_path(_map(http_path), rule_path + ("http", "paths", j))
    for i, tls in enumerate(_list(spec.get("tls"))):
        tls = _map(tls)
        tls_path = path + ("tls", i)
        for j, host in enumerate(_list(tls.get("hosts"))):
            problems += _check_host(tls_path + ("hosts", j), _str(host))
        secret_name = _str(tls.get("secretName"))
        if secret_name:
            problems += _check_name(tls_path + ("secretName",), secret_name, names.is_dns1123_subdomain)
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        problems += _check_name(path + ("ingressClassName",), _str(class_name), names.is_dns1123_subdomain)
    annotations = _map(_map(body.get("metadata")).get("annotations"))
    annotated_class = annotations.get(_INGRESS_CLASS_ANNOTATION)
    if annotated_class is not None and class_name is not None and annotated_class != class_name:
        problems.append(
            _invalid(
                ("metadata", "annotations", _INGRESS_CLASS_ANNOTATION),
                annotated_class,
                "must match `ingressClassName` when both are specified",
            )
        )
    return problems


def _validate_ingress_class(body: dict) -> list[Problem]:
    spec = _map(body.get("spec"))
    controller_path: FieldPath = ("spec", "controller")
    controller = _str(spec.get("controller"))
    problems = []
    if len(controller) > _MAX_CONTROLLER_LENGTH:
        problems.append(_too_long(controller_path, _MAX_CONTROLLER_LENGTH))
    # IsDomainPrefixedPath: "example.com/some/path".
    domain, slash, rest = controller.partition("/")
    if not controller:
        problems.append(_required(controller_path))
    elif not slash or not domain or not rest:
        problems.append(_invalid(controller_path, controller, 'must be a domain-prefixed path (such as "acme.io/foo")'))
    else:
        problems += _invalid_each(controller_path, domain, names.is_dns1123_subdomain(domain))
        problems += _invalid_each(controller_path, rest, names.is_http_path(rest))
    parameters = spec.get("parameters")
    if parameters is not None:
        parameters = _map(parameters)
        parameters_path: FieldPath = ("spec", "parameters")
        problems += _validate_object_reference(parameters, parameters_path)
        scope = _str(parameters.get("scope")) or "Cluster"
        namespace = parameters.get("namespace")
        if scope not in ("Cluster", "Namespace"):
            problems.append(_not_supported(parameters_path + ("scope",), scope, ("Cluster", "Namespace")))
        elif scope == "Namespace":
            if namespace is None:
                problems.append(_required(parameters_path + ("namespace",), "`parameters.scope` is set to 'Namespace'"))
            else:
                problems += _check_name(parameters_path + ("namespace",), _str(namespace), names.is_dns1123_label)
        elif namespace is not None:
            problems.append(_forbidden(parameters_path + ("namespace",), "`parameters.scope` is set to 'Cluster'"))
    return problems


# ---------------------------------------------------------------- Endpoints and EndpointSlice

_ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
_MAX_SLICE_ENDPOINTS = 1000
_MAX_SLICE_ADDRESSES = 100
_MAX_SLICE_PORTS = 20000


def _validate_endpoint_port(port: dict, path: FieldPath, name_required: bool) -> list[Problem]:
    problems = []
    name = _str(port.get("name"))
    if name_required and not name:
        problems.append(_required(path + ("name",)))
    elif name:
        problems += _check_name(path + ("name",), name, names.is_dns1123_label)
    problems += _check_port_number(path + ("port",), _int(port.get("port")) or 0)
    problems += _check_protocol(path + ("protocol",), port.get("protocol"))
    app_protocol = port.get("appProtocol")
    if isinstance(app_protocol, str):
        problems += _check_name(path + ("appProtocol",), app_protocol, names.is_qualified_name)
    return problems


def _validate_endpoints(body: dict) -> list[Problem]:
    problems = []
    for i, subset in enumerate(_list(body.get("subsets"))):
        subset = _map(subset)
        subset_path: FieldPath = ("subsets", i)
        addresses = _list(subset.get("addresses"))
        not_ready = _list(subset.get("notReadyAddresses"))
        if not addresses and not not_ready:
            problems.append(_required(subset_path, "must specify `addresses` or `notReadyAddresses`"))
        for addresses_field, entries in (("addresses", addresses), ("notReadyAddresses", not_ready)):
            for j, address in enumerate(entries):
                address = _map(address)
                address_path = subset_path + (addresses_field, j)
                problems += _check_endpoint_ip(address_path + ("ip",), _str(address.get("ip")))
                hostname = _str(address.get("hostname"))
                if hostname:
                    problems += _check_name(address_path + ("hostname",), hostname, names.is_dns1123_label)
                node_name = address.get("nodeName")
                if node_name is not None:
                    problems += _check_name(address_path + ("nodeName",), _str(node_name), names.is_dns1123_subdomain)
        ports = _list(subset.get("ports"))
        for j, port in enumerate(ports):
            problems += _validate_endpoint_port(_map(port), subset_path + ("ports", j), len(ports) > 1)
    return problems


def _check_fqdn(path: FieldPath, name: str) -> list[Problem]:
    """IsFullyQualifiedDomainName: at least two labels, a trailing dot allowed."""
    if not name:
        return [_required(path)]
    name = name.removesuffix(".")
    errors = names.is_dns1123_subdomain(name)
    if errors:
        return [_invalid(path, name, ",".join(errors))]
    domain_labels = name.split(".")
    if len(domain_labels) < 2:
        return [_invalid(path, name, "should be a domain with at least two segments separated by dots")]
    for label in domain_labels:
        errors = names.is_dns1123_label(label)
        if errors:
            return [_invalid(path, label, ",".join(errors))]
    return []


def _check_slice_address(path: FieldPath, address: str, address_type: str) -> list[Problem]:
    if address_type == "FQDN":
        return _check_fqdn(path, address)
    check = names.is_valid_ipv4_address if address_type == "IPv4" else names.is_valid_ipv6_address
    errors = check(address)
    if errors:
        return _invalid_each(path, address, errors)
    return _check_endpoint_ip(path, address)


def _validate_endpoint_slice(body: dict) -> list[Problem]:
    problems = []
    address_type = _str(body.get("addressType"))
    if not address_type:
        problems.append(_required(("addressType",)))
    elif address_type not in _ADDRESS_TYPES:
        problems.append(_not_supported(("addressType",), address_type, _ADDRESS_TYPES))
    endpoints = _list(body.get("endpoints"))
    if len(endpoints) > _MAX_SLICE_ENDPOINTS:
        problems.append(_too_many(("endpoints",), len(endpoints), _MAX_SLICE_ENDPOINTS))
        endpoints = []
    for i, endpoint in enumerate(endpoints):
        endpoint = _map(endpoint)
        endpoint_path: FieldPath = ("endpoints", i)
        addresses_path = endpoint_path + ("addresses",)
        addresses = _list(endpoint.get("addresses"))
        if not addresses:
            problems.append(_required(addresses_path, "must contain at least 1 address"))
        elif len(addresses) > _MAX_SLICE_ADDRESSES:
            problems.append(_too_many(addresses_path, len(addresses), _MAX_SLICE_ADDRESSES))
        if address_type in _ADDRESS_TYPES:
            for j, address in enumerate(addresses):
                problems += _check_slice_address(addresses_path + (j,), _str(address), address_type)
        node_name = endpoint.get("nodeName")
        if node_name is not None:
            problems += _check_name(endpoint_path + ("nodeName",), _str(node_name), names.is_dns1123_subdomain)
        hostname = endpoint.get("hostname")
        if hostname is not None:
            problems += _check_name(endpoint_path + ("hostname",), _str(hostname), names.is_dns1123_label)
    ports = _list(body.get("ports"))
    if len(ports) > _MAX_SLICE_PORTS:
        problems.append(_too_many(("ports",), len(ports), _MAX_SLICE_PORTS))
        ports = []
    seen_names: set[str] = set()
    for i, port in enumerate(ports):
        port = _map(port)
        port_path: FieldPath = ("ports", i)
        # An absent name is defaulted to "", so two unnamed ports are duplicates. The port
        # number is not range-checked: upstream leaves it to the controllers that write slices.
        name = _str(port.get("name"))
        if name:
            problems += _check_name(port_path + ("name",), name, names.is_dns1123_label)
        if name in seen_names:
            problems.append(_duplicate(port_path + ("name",), name))
        seen_names.add(name)
        problems += _check_protocol(port_path + ("protocol",), port.get("protocol"))
        app_protocol = port.get("appProtocol")
        if isinstance(app_protocol, str):
            problems += _check_name(port_path + ("appProtocol",), app_protocol, names.is_qualified_name)
    return problems


# ---------------------------------------------------------------- Secret, ConfigMap, Node


def _decoded_size(base64_text: str) -> int:
    return len(base64_text) * 3 // 4 - base64_text[-2:].count("=")


def _validate_secret(body: dict) -> list[Problem]:
    problems = []
    data = _map(body.get("data"))
    string_data = _map(body.get("stringData"))
    total = 0
    for key, value in data.items():
        key = str(key)
        problems += _invalid_each(("data", key), key, names.is_config_map_key(key))
        total += _decoded_size(_str(value))
    for key, value in string_data.items():
        key = str(key)
        problems += _invalid_each(("stringData", key), key, names.is_config_map_key(key))
        total += len(_str(value).encode())
    if total > _MAX_DATA_BYTES:
        problems.append(_too_long(("data",), _MAX_DATA_BYTES))
    if body.get("type") == "kubernetes.io/tls":
        for required_key in ("tls.crt", "tls.key"):
            if required_key not in data and required_key not in string_data:
                problems.append(_required(("data", required_key)))
    return problems


def _validate_config_map(body: dict) -> list[Problem]:
    problems = []
    data = _map(body.get("data"))
    binary_data = _map(body.get("binaryData"))
    total = 0
    for key, value in data.items():
        key = str(key)
        problems += _invalid_each(("data", key), key, names.is_config_map_key(key))
        if key in binary_data:
            problems.append(_invalid(("data", key), key, "duplicate of key present in binaryData"))
        total += len(_str(value).encode())
    for key, value in binary_data.items():
        key = str(key)
        problems += _invalid_each(("binaryData", key), key, names.is_config_map_key(key))
        total += _decoded_size(_str(value))
    if total > _MAX_DATA_BYTES:
        problems.append(_too_long((), _MAX_DATA_BYTES))
    return problems


def _validate_node(body: dict) -> list[Problem]:
    spec = _map(body.get("spec"))
    given = [_str(cidr) for cidr in _list(spec.get("podCIDRs"))]
    single = _str(spec.get("podCIDR"))
    cidrs = given or ([single] if single else [])

    def cidr_path(index: int) -> FieldPath:
        return ("spec", "podCIDRs", index) if given else ("spec", "podCIDR")

    problems = []
    for i, cidr in enumerate(cidrs):
        problems += _invalid_each(cidr_path(i), cidr, names.is_valid_cidr(cidr))
    if len(cidrs) > 1:
        networks = [names.parse_cidr(cidr) for cidr in cidrs]
        versions = {network.version for network in networks if network is not None}
        if len(cidrs) > 2 or versions != {4, 6}:
            problems.append(_invalid(("spec", "podCIDRs"), cidrs, "may specify no more than one CIDR for each IP family"))
    return problems


# ---------------------------------------------------------------- RBAC (pkg/apis/rbac/validation)

_SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def _validate_policy_rules(body: dict, namespaced: bool) -> list[Problem]:
    """ValidatePolicyRule for each rule: a rule names verbs, and either resources (with their API
    groups) or non-resource URLs, which only cluster-wide roles can grant."""
    problems = []
    for i, rule in enumerate(_list(body.get("rules"))):
        rule = _map(rule)
        path: FieldPath = ("rules", i)
        if not _list(rule.get("verbs")):
            problems.append(_required(path + ("verbs",), "verbs must contain at least one value"))
        urls = _list(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                problems.append(_invalid(path + ("nonResourceURLs",), urls, "namespaced rules cannot apply to non-resource URLs"))
            if any(_list(rule.get(key)) for key in ("apiGroups", "resources", "resourceNames")):
                problems.append(_invalid(path + ("nonResourceURLs",), urls,
                                         "rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not _list(rule.get("apiGroups")):
            problems.append(_required(path + ("apiGroups",), "resource rules must supply at least one api group"))
        if not _list(rule.get("resources")):
            problems.append(_required(path + ("resources",), "resource rules must supply at least one resource"))
    return problems


def _validate_role(body: dict) -> list[Problem]:
    return _validate_policy_rules(body, namespaced=True)


def _validate_cluster_role(body: dict) -> list[Problem]:
    problems = _validate_policy_rules(body, namespaced=False)
    rule = body.get("aggregationRule")
    if rule is not None:
        path: FieldPath = ("aggregationRule", "clusterRoleSelectors")
        selectors = _list(_map(rule).get("clusterRoleSelectors"))
        if not selectors:
            problems.append(_required(path, "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        for i, selector in enumerate(selectors):
            problems += validate_label_selector(_map(selector), path + (i,))
    return problems


def _validate_subject(subject: dict, path: FieldPath, namespaced: bool) -> list[Problem]:
    """ValidateRoleBindingSubject, after SetDefaults_Subject (an empty apiGroup becomes "" for a
    ServiceAccount and rbac.authorization.k8s.io for a User or Group)."""
    problems = []
    name = _str(subject.get("name"))
    if not name:
        problems.append(_required(path + ("name",)))
    kind = _str(subject.get("kind"))
    api_group = _str(subject.get("apiGroup"))
    if kind == "ServiceAccount":
        if name:
            problems += _check_name(path + ("name",), name, names.is_dns1123_subdomain)
        if api_group:
            problems.append(_not_supported(path + ("apiGroup",), api_group, ("",)))
        # a RoleBinding's ServiceAccount defaults to the binding's namespace; a cluster binding has none
        if not namespaced and not _str(subject.get("namespace")):
            problems.append(_required(path + ("namespace",)))
    elif kind in ("User", "Group"):
        if api_group and api_group != RBAC_GROUP:
            problems.append(_not_supported(path + ("apiGroup",), api_group, (RBAC_GROUP,)))
    else:
        problems.append(_not_supported(path + ("kind",), kind, _SUBJECT_KINDS))
    return problems


def _validate_binding(body: dict, namespaced: bool) -> list[Problem]:
    """ValidateRoleBinding / ValidateClusterRoleBinding: a RoleBinding may grant a Role of its
    namespace or a ClusterRole (within its namespace); a ClusterRoleBinding only a ClusterRole."""
    problems = []
    ref = _map(body.get("roleRef"))
    ref_path: FieldPath = ("roleRef",)
    api_group = _str(ref.get("apiGroup")) or RBAC_GROUP  # SetDefaults_RoleBinding
    if api_group != RBAC_GROUP:
        problems.append(_not_supported(ref_path + ("apiGroup",), api_group, (RBAC_GROUP,)))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    kind = _str(ref.get("kind"))
    if kind not in kinds:
        problems.append(_not_supported(ref_path + ("kind",), kind, kinds))
    name = _str(ref.get("name"))
    if not name:
        problems.append(_required(ref_path + ("name",)))
    else:
        problems += _check_name(ref_path + ("name",), name, names.is_valid_path_segment_name)
    for i, subject in enumerate(_list(body.get("subjects"))):
        problems += _validate_subject(_map(subject), ("subjects", i), namespaced)
    return problems


def _validate_role_binding(body: dict) -> list[Problem]:
    return _validate_binding(body, namespaced=True)


def _validate_cluster_role_binding(body: dict) -> list[Problem]:
    return _validate_binding(body, namespaced=False)


# ---------------------------------------------------------------- entry point

_SPEC_CHECKS: dict[str, Callable[[dict], list[Problem]]] = {
    "Pod": _validate_pod,
    "Deployment": _validate_deployment,
    "ReplicaSet": _validate_replica_set,
    "StatefulSet": _validate_stateful_set,
    "DaemonSet": _validate_daemon_set,
    "Job": _validate_job,
    "Service": _validate_service,
    "NetworkPolicy": _validate_network_policy,
    "Ingress": _validate_ingress,
    "IngressClass": _validate_ingress_class,
    "AdminNetworkPolicy": _validate_admin_network_policy,
    "BaselineAdminNetworkPolicy": _validate_baseline_admin_network_policy,
    "AuthorizationPolicy": _validate_authorization_policy,
    "PeerAuthentication": _validate_peer_authentication,
    "Endpoints": _validate_endpoints,
    "EndpointSlice": _validate_endpoint_slice,
    "Secret": _validate_secret,
    "ConfigMap": _validate_config_map,
    "Node": _validate_node,
    "Role": _validate_role,
    "ClusterRole": _validate_cluster_role,
    "RoleBinding": _validate_role_binding,
    "ClusterRoleBinding": _validate_cluster_role_binding,
}


def validate_object(obj: KubeObject) -> list[Problem]:
    """What the API server would reject in `obj` beyond its schema; empty if it would accept it.

    Kinds podnet does not know (kinds.BY_KIND) are not checked.
    """
    if obj.kind not in BY_KIND:
        return []
    body = obj.body if isinstance(obj.body, dict) else {}
    problems = _validate_metadata(obj.kind, body)
    check = _SPEC_CHECKS.get(obj.kind)
    if check is not None:
        problems += check(body)
    return problems
