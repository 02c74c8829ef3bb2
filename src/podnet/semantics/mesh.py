"""The service mesh's rules, as Istio's control plane (and Linkerd's injector) decide them.

Which pods get a proxy beside them (injection: the control plane's admission decision,
controlplane/injection.py, whose names this module passes on), each workload's identity (a SPIFFE id from its
namespace and ServiceAccount), whether a port of a workload takes plaintext from a client
without a proxy (PeerAuthentication's mode) and whether a request or a connection is let
through (AuthorizationPolicy). One copy of each rule: the simulator's `trace` and `check`, the
proxies' configuration and the tests all ask this module.

The rules follow istio/istio (pilot/pkg/security/authz/builder and model: how policies become
Envoy RBAC; pilot/pkg/security/authn: how PeerAuthentication composes; pkg/kube/inject: the
injection decision) and istio/api's protos; linkerd2's pkg/inject for `linkerd.io/inject`;
docs/specs/istio-mesh.md summarises them with their sources.
What podnet does not have is treated as absent: no JWTs (request principals never match), no
external authorizers (a CUSTOM policy fails closed: what it matches is denied, as Istio does for
a provider it does not know).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from podnet.api.objects import KubeObject
# the injector's decision is the control plane's (its admission webhook); asked here by the same names
from podnet.controlplane.injection import (  # noqa: F401
    ISTIO_INJECT, ISTIO_INJECTION, ISTIO_REV, LINKERD_CONTROL_PLANE_LABEL, LINKERD_DEFAULT_OPAQUE_PORTS, LINKERD_INJECT,
    OPAQUE_PORTS, PROXY_CONTAINERS, SYSTEM_NAMESPACES, TLS_MODE_LABEL, Injection, injection, is_meshed, proxy_container)
from podnet.semantics import httproute
from podnet.semantics.meshcapture import LINKERD_SKIP_INBOUND, port_ranges, skipped_inbound, within  # noqa: F401  (trace names it)

ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace: its policies apply mesh-wide
TRUST_DOMAIN = "cluster.local"
DRY_RUN = "istio.io/dry-run"  # an AuthorizationPolicy annotation: evaluated, never enforced

MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")


# -- identity --------------------------------------------------------------------------------------


def service_account_of(pod: KubeObject) -> str:
    return pod.spec.get("serviceAccountName") or pod.spec.get("serviceAccount") or "default"


def spiffe_id(namespace: str, service_account: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """The identity a workload's certificate carries (its URI SAN)."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


_SPIFFE = re.compile(r"^spiffe://([^/]+)/ns/([^/]+)/sa/([^/]+)$")


def namespace_of(principal: str | None) -> str | None:
    """The namespace a peer's SPIFFE id names (None: plaintext, or not a workload id)."""
    found = _SPIFFE.match(principal or "")
    return found.group(2) if found else None


# -- PeerAuthentication ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MtlsMode:
    mode: str  # DISABLE, PERMISSIVE or STRICT
    decided_by: str  # "PeerAuthentication NS/NAME (mesh|namespace|workload|port N)", or the default

    @property
    def accepts_plaintext(self) -> bool:
        return self.mode != "STRICT"

    @property
    def takes_mtls(self) -> bool:
        return self.mode != "DISABLE"


def mtls_mode(policies: Iterable[KubeObject], namespace: str, labels: Mapping[str, str], port: int,
              root_namespace: str = ROOT_NAMESPACE) -> MtlsMode:
    """The mTLS mode of a workload's port (the container port a connection arrives at): the
    oldest mesh-wide policy (root namespace, no selector), the oldest of its namespace, the
    oldest selecting it, then its port-level setting, each UNSET inheriting; PERMISSIVE when
    nothing applies. A root-namespace policy with a selector is ignored; an empty matchLabels is
    no selector."""
    mesh = namespace_wide = workload = None
    for policy in sorted((p for p in policies if p.kind == "PeerAuthentication"), key=by_age):
        selector = ((policy.spec.get("selector") or {}).get("matchLabels")) or {}
        if policy.namespace == root_namespace and not selector:
            mesh = mesh or policy
        elif policy.namespace == namespace and not selector:
            namespace_wide = namespace_wide or policy
        elif policy.namespace == namespace and policy.namespace != root_namespace and _subset(selector, labels):
            workload = workload or policy
    mode, decided = "PERMISSIVE", "the default (no PeerAuthentication sets a mode)"
    for policy, level in ((mesh, "mesh"), (namespace_wide, "namespace"), (workload, "workload")):
        said = _mode(policy.spec.get("mtls")) if policy is not None else "UNSET"
        if said != "UNSET":
            mode, decided = said, f"PeerAuthentication {policy.namespace}/{policy.name} ({level})"
    if workload is not None:
        ports = workload.spec.get("portLevelMtls") or {}
        said = _mode(next((m for key, m in ports.items() if port_number(key) == port), None))
        if said != "UNSET":
            mode, decided = said, f"PeerAuthentication {workload.namespace}/{workload.name} (port {port})"
    return MtlsMode(mode, decided)


def _mode(mtls: Mapping | None) -> str:
    mode = (mtls or {}).get("mode") or "UNSET"
    return mode if mode in MODES else "UNSET"


def by_age(policy: KubeObject) -> tuple[str, str, str]:
    """Older first; the same second: by name, then namespace (istio's configCompareByCreationTime)."""
    return (policy.metadata.get("creationTimestamp") or "", policy.name, policy.namespace)


def _subset(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# -- protocols -------------------------------------------------------------------------------------

HTTP_PROTOCOLS = ("http", "http2", "grpc", "grpc-web")


def port_protocol(services: Iterable[KubeObject], pod: KubeObject, port: int) -> str:
    """"http" or "tcp": how a proxy handles connections to the pod's container port `port` —
    HTTP when a Service selecting the pod declares that port's protocol HTTP (its appProtocol,
    else its name: `http`, `http-…`, `http2`, `grpc…`: Istio's explicit protocol selection),
    TCP otherwise (podnet does not sniff a connection's first bytes), and for an opaque port."""
    if is_opaque(pod, port):
        return "tcp"
    for svc in services:
        selector = svc.spec.get("selector")
        if svc.kind != "Service" or svc.namespace != pod.namespace or not selector or not _subset(selector, pod.labels):
            continue
        for entry in svc.spec.get("ports") or []:
            if _target_port(pod, entry.get("targetPort", entry.get("port"))) != port:
                continue
            if declared_protocol(entry) == "http":
                return "http"
    return "tcp"


def opaque_ports(pod: KubeObject) -> tuple[tuple[int, int], ...]:
    """The pod's opaque ports (its `config.linkerd.io/opaque-ports`, which the injector set from
    its namespace or Linkerd's default): its proxy carries their connections as bytes and takes
    them in plaintext at once, without waiting to see whether the client starts TLS — a client
    of a server that speaks first (MySQL, SMTP) would wait for ever — so a client's proxy
    reaches such a port in mutual TLS through the server proxy's tunnel port (Linkerd's opaque
    transport)."""
    names = {p.get("name"): p.get("containerPort") for c in pod.spec.get("containers") or []
             for p in c.get("ports") or [] if p.get("name") and isinstance(p.get("containerPort"), int)}
    return port_ranges((pod.metadata.get("annotations") or {}).get(OPAQUE_PORTS, ""), names)


def is_opaque(pod: KubeObject, port: int) -> bool:
    return is_meshed(pod) and within(port, opaque_ports(pod))


def opaque_service_port(svc: KubeObject, service_port: Mapping) -> bool:
    """A Service port its `config.linkerd.io/opaque-ports` names: a client's proxy carries its
    connections as bytes, never as HTTP requests, whatever the port declares."""
    number = service_port.get("port")
    names = {p.get("name"): p.get("port") for p in svc.spec.get("ports") or []
             if p.get("name") and isinstance(p.get("port"), int)}
    return isinstance(number, int) and within(
        number, port_ranges((svc.metadata.get("annotations") or {}).get(OPAQUE_PORTS, ""), names))


def routes_of(routes: Iterable[KubeObject], svc: KubeObject, service_port: Mapping, client_namespace: str) -> list:
    """The HTTPRoutes a client's proxy applies to the Service port (GAMMA, semantics/httproute.py):
    none on an opaque port, which carries bytes."""
    if opaque_service_port(svc, service_port):
        return []
    return httproute.attached(routes, svc, service_port, client_namespace)


def carries_requests(svc: KubeObject, service_port: Mapping, routes: list) -> bool:
    """Whether a client's proxy takes the Service port's connections request by request (HTTP):
    HTTPRoutes apply to it (routes_of), or it declares HTTP and is not opaque."""
    return bool(routes) or (declared_protocol(service_port) == "http" and not opaque_service_port(svc, service_port))


def tunnels(policies: Iterable[KubeObject], endpoint: KubeObject | None, port: int,
            services: Iterable[KubeObject]) -> bool:
    """Whether a client's proxy reaches the endpoint's `port` through its proxy's tunnel port
    (meshcapture.TUNNEL_PORT) in mutual TLS: it speaks mTLS to it, the port is opaque and one the
    endpoint's proxy knows (workload_ports: its tunnel has a way in for each of those)."""
    policies = list(policies)
    return sends_mtls(policies, endpoint, port) and is_opaque(endpoint, port) \
        and port in workload_ports(services, policies, endpoint)


def sends_mtls(policies: Iterable[KubeObject], endpoint: KubeObject | None, port: int) -> bool:
    """Istio's auto-mTLS: a client's proxy speaks mutual TLS to an endpoint with a proxy beside
    it whose port takes mTLS (not DISABLE); plaintext to anything else — and to a port the
    endpoint's Linkerd annotation keeps away from its proxy (skip-inbound-ports: Linkerd's
    destination gives such an address no identity)."""
    if endpoint is None or not is_meshed(endpoint):
        return False
    if within(port, skipped_inbound(endpoint.metadata.get("annotations"))):
        return False
    return mtls_mode(policies, endpoint.namespace, endpoint.labels, port).takes_mtls


def proxied_ports(services: Iterable[KubeObject]):
    """(Service, port entry) for each port a sidecar's outbound side proxies: the TCP ports of
    Services with a cluster IP (UDP is not captured; a headless Service has no address to catch)."""
    for svc in services:
        if svc.spec.get("clusterIP") in (None, "", "None"):
            continue
        for port in svc.spec.get("ports") or []:
            if (port.get("protocol") or "TCP") == "TCP":
                yield svc, port


def declared_protocol(service_port: Mapping) -> str:
    """"http" or "tcp": what a Service port declares it carries (its appProtocol, else its name:
    `http`, `http-…`, `http2`, `grpc…`: Istio's explicit protocol selection)."""
    declared = (service_port.get("appProtocol") or (service_port.get("name") or "").split("-", 1)[0]).lower()
    return "http" if declared in HTTP_PROTOCOLS else "tcp"


def workload_ports(services: Iterable[KubeObject], policies: Iterable[KubeObject], pod: KubeObject) -> set[int]:
    """The ports a proxy treats one by one (each may have its own protocol and mode): those the
    containers declare, those Services selecting the pod target, and those a PeerAuthentication
    selecting it gives a mode of their own."""
    ports = {p.get("containerPort") for c in pod.spec.get("containers") or [] for p in c.get("ports") or []
             if str(p.get("protocol") or "TCP") == "TCP"}
    for svc in services:
        selector = svc.spec.get("selector")
        if svc.kind == "Service" and svc.namespace == pod.namespace and selector and _subset(selector, pod.labels):
            ports |= {_target_port(pod, e.get("targetPort", e.get("port"))) for e in svc.spec.get("ports") or []
                      if str(e.get("protocol") or "TCP") == "TCP"}
    for policy in policies:
        selector = ((policy.spec.get("selector") or {}).get("matchLabels")) or {}
        if policy.kind == "PeerAuthentication" and policy.namespace == pod.namespace and selector \
                and _subset(selector, pod.labels):
            ports |= {port_number(key) for key in policy.spec.get("portLevelMtls") or {}}
    return {p for p in ports if isinstance(p, int) and 0 < p < 65536}


def _target_port(pod: KubeObject, target) -> int | None:
    if isinstance(target, int):
        return target
    for container in pod.spec.get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == target:
                return declared.get("containerPort")
    return int(target) if isinstance(target, str) and target.isdigit() else None


# -- AuthorizationPolicy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Http:
    """What the server's proxy sees of an HTTP request."""
    method: str = "GET"
    path: str = "/"
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """A request (`http` set) or a TCP connection (`http` None) arriving at a workload's proxy:
    the client's identity (its SPIFFE id, None over plaintext), its address, and the workload's
    address and port it was sent to (the container port, not the Service's)."""
    principal: str | None
    source_ip: str
    port: int
    destination_ip: str | None = None
    http: Http | None = None
    sni: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # what decided: "DENY" / "CUSTOM" (a policy's rule matched), "ALLOW" (one matched), "no ALLOW
    # policy" (nothing to allow against: let through), "no ALLOW rule matched" (denied)
    by: str
    policy: str | None = None  # NAMESPACE/NAME of the deciding policy
    rule: int | None = None  # its rule's index
    audited: tuple[str, ...] = ()  # AUDIT policies whose rules matched (they decide nothing)

    def __str__(self) -> str:
        where = f" {self.policy} rule {self.rule}" if self.policy is not None else ""
        return f"{'allowed' if self.allowed else 'denied'}: {self.by}{where}"


def applies_to(policy: KubeObject, namespace: str, labels: Mapping[str, str],
               root_namespace: str = ROOT_NAMESPACE) -> bool:
    """Whether an AuthorizationPolicy governs a sidecar workload: one of its namespace's or of
    the root namespace's, without targetRefs (those are for gateways and waypoints), selecting
    the workload's labels (matchLabels as a subset) or selecting nothing (all of them)."""
    if policy.namespace not in (namespace, root_namespace):
        return False
    if policy.spec.get("targetRef") or policy.spec.get("targetRefs"):
        return False
    selector = policy.spec.get("selector")
    return selector is None or _subset(selector.get("matchLabels") or {}, labels)


def authorize(policies: Iterable[KubeObject], namespace: str, labels: Mapping[str, str], request: Request,
              root_namespace: str = ROOT_NAMESPACE) -> Decision:
    """Istio's decision for `request` at the workload with `labels` in `namespace`: a CUSTOM
    rule that matches denies (no external authorizer), then a DENY rule that matches denies;
    with no enforced ALLOW policy the request passes, else an ALLOW rule must match. AUDIT only
    marks. A policy annotated istio.io/dry-run=true is evaluated and never enforced."""
    governing = sorted((p for p in policies if p.kind == "AuthorizationPolicy"
                        and applies_to(p, namespace, labels, root_namespace)), key=by_age)
    enforced = [p for p in governing if not is_dry_run(p)]
    by_action: dict[str, list[KubeObject]] = {action: [] for action in ACTIONS}
    for policy in enforced:
        by_action.setdefault(policy.spec.get("action") or "ALLOW", []).append(policy)
    audited = tuple(f"{p.namespace}/{p.name}" for p in by_action["AUDIT"] if _matching_rule(p, request) is not None)
    for action in ("CUSTOM", "DENY"):
        for policy in by_action[action]:
            rule = _matching_rule(policy, request)
            if rule is not None:
                return Decision(False, action, f"{policy.namespace}/{policy.name}", rule, audited)
    if not by_action["ALLOW"]:
        return Decision(True, "no ALLOW policy", audited=audited)
    for policy in by_action["ALLOW"]:
        rule = _matching_rule(policy, request)
        if rule is not None:
            return Decision(True, "ALLOW", f"{policy.namespace}/{policy.name}", rule, audited)
    return Decision(False, "no ALLOW rule matched", audited=audited)


def is_dry_run(policy: KubeObject) -> bool:
    """istio.io/dry-run as Go's ParseBool reads it (anything else: enforced)."""
    return str((policy.metadata.get("annotations") or {}).get(DRY_RUN, "")) in ("1", "t", "T", "TRUE", "true", "True")


def _matching_rule(policy: KubeObject, request: Request) -> int | None:
    """The index of the first rule of `policy` that matches, or None. Over TCP, a rule of an
    ALLOW policy that uses an HTTP-only attribute is dropped whole (it can never allow); for
    the other actions only those attributes are dropped (the rule matches more: it denies more)."""
    allow = (policy.spec.get("action") or "ALLOW") == "ALLOW"
    for index, rule in enumerate(policy.spec.get("rules") or []):
        rule = rule or {}
        if request.http is None and uses_http(rule):
            if allow:
                continue
            rule = without_http(rule)
        if _rule_matches(rule, request, policy.namespace):
            return index
    return None


HTTP_SOURCE_FIELDS = ("requestPrincipals", "notRequestPrincipals")
HTTP_OPERATION_FIELDS = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")


def is_http_key(key: str) -> bool:
    """A `when` key only an HTTP request has."""
    return key.startswith("request.")


def uses_http(rule: Mapping) -> bool:
    return (any((entry.get("source") or {}).get(f) for entry in rule.get("from") or [] for f in HTTP_SOURCE_FIELDS)
            or any((entry.get("operation") or {}).get(f) for entry in rule.get("to") or [] for f in HTTP_OPERATION_FIELDS)
            or any(is_http_key(c.get("key") or "") for c in rule.get("when") or []))


def without_http(rule: Mapping) -> dict:
    def trimmed(entries, part, fields):
        return [{part: {k: v for k, v in (entry.get(part) or {}).items() if k not in fields}}
                for entry in entries or []]
    out = {}
    if rule.get("from"):
        out["from"] = trimmed(rule["from"], "source", HTTP_SOURCE_FIELDS)
    if rule.get("to"):
        out["to"] = trimmed(rule["to"], "operation", HTTP_OPERATION_FIELDS)
    if rule.get("when"):
        out["when"] = [c for c in rule["when"] if not is_http_key(c.get("key") or "")]
    return out


def _rule_matches(rule: Mapping, request: Request, policy_namespace: str) -> bool:
    """from AND to AND when; each list an OR of its entries (when: an AND of its conditions)."""
    sources, operations = rule.get("from"), rule.get("to")
    if sources and not any(_source_matches(e.get("source") or {}, request, policy_namespace) for e in sources):
        return False
    if operations and not any(_operation_matches(e.get("operation") or {}, request) for e in operations):
        return False
    return all(_condition_holds(c, request, policy_namespace) for c in rule.get("when") or [])


def _source_matches(source: Mapping, request: Request, policy_namespace: str) -> bool:
    principal, peer_namespace = request.principal, namespace_of(request.principal)
    checks = {
        "principals": lambda values: any(_principal_matches(v, principal) for v in values),
        "namespaces": lambda values: any(_glob(v, peer_namespace) for v in values),
        "ipBlocks": lambda values: any(_in_block(v, request.source_ip) for v in values),
        "remoteIpBlocks": lambda values: any(_in_block(v, request.source_ip) for v in values),
        "serviceAccounts": lambda values: any(_service_account_matches(v, principal, policy_namespace) for v in values),
        "trustDomains": lambda values: any(_trust_domain_matches(v, principal) for v in values),
        "requestPrincipals": lambda values: False,  # no JWTs: never a request principal
    }
    return _fields_match(source, checks)


def _operation_matches(operation: Mapping, request: Request) -> bool:
    http = request.http
    checks = {
        "ports": lambda values: any(port_number(v) == request.port for v in values),
        "hosts": lambda values: http is not None and any(_string(v.lower(), http.host.lower()) for v in values),
        "methods": lambda values: http is not None and any(_string(v, http.method) for v in values),
        "paths": lambda values: http is not None and any(_path_matches(v, normalized_path(http.path)) for v in values),
    }
    return _fields_match(operation, checks)


def _fields_match(fields: Mapping, checks: Mapping) -> bool:
    """Every field set holds: X when one of its values matches, notX when none does."""
    for name, check in checks.items():
        values, negated = fields.get(name), fields.get("not" + name[0].upper() + name[1:])
        if values and not check(values):
            return False
        if negated and check(negated):
            return False
    return True


def _condition_holds(condition: Mapping, request: Request, policy_namespace: str) -> bool:
    key, values, negated = condition.get("key") or "", condition.get("values"), condition.get("notValues")
    matches = _condition_matcher(key, request, policy_namespace)
    if values and not any(matches(v) for v in values):
        return False
    return not (negated and any(matches(v) for v in negated))


def _condition_matcher(key: str, request: Request, policy_namespace: str):
    http = request.http
    header = re.fullmatch(r"request\.headers\[(.+)\]", key)
    if header:
        found = None if http is None else _header(http, header.group(1))
        return lambda v: found is not None and (v == "*" or _string(v, found))
    simple = {
        "source.ip": lambda v: _in_block(v, request.source_ip),
        "remote.ip": lambda v: _in_block(v, request.source_ip),
        "source.namespace": lambda v: _glob(v, namespace_of(request.principal)),
        "source.principal": lambda v: _principal_matches(v, request.principal),
        "source.serviceAccount": lambda v: _service_account_matches(v, request.principal, policy_namespace),
        "source.trustDomain": lambda v: _trust_domain_matches(v, request.principal),
        "destination.ip": lambda v: request.destination_ip is not None and _in_block(v, request.destination_ip),
        "destination.port": lambda v: port_number(v) == request.port,
        "connection.sni": lambda v: request.sni is not None and _string(v, request.sni),
    }
    if key in simple:
        return simple[key]
    return lambda v: False  # request.auth.*: no JWTs, never present


def _header(http: Http, name: str) -> str | None:
    """A request header by name (any case), the pseudo-headers included as Envoy sees them."""
    query = "?" + http.path.split("?", 1)[1] if "?" in http.path else ""
    pseudo = {":method": http.method, ":path": normalized_path(http.path) + query, ":authority": http.host}
    if name.lower() in pseudo:
        return pseudo[name.lower()]
    return next((v for k, v in http.headers.items() if k.lower() == name.lower()), None)


def port_number(value) -> int | None:
    """A port as Istio parses it (base-10 ASCII digits: "080" is 80), or None."""
    text = str(value)
    return int(text) if re.fullmatch(r"[0-9]{1,5}", text) else None


def _string(pattern: str, value: str | None) -> bool:
    """Istio's string match: exact, `abc*` a prefix, `*abc` a suffix, `*` any non-empty value."""
    if value is None:
        return False
    if pattern == "*":
        return value != ""
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def principal_pattern(pattern: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """A principal pattern as a pattern over SPIFFE ids (matched by Istio's string match):
    `spiffe://` put before it, and `cluster.local` as the trust domain of a whole `TD/ns/N/sa/S`
    standing for the mesh's own. (The proxies' RBAC renders the same pattern.)"""
    parts = pattern.split("/")
    if len(parts) == 5 and parts[0] == "cluster.local":
        pattern = "/".join([trust_domain, *parts[1:]])
    # (a leading `*` is a suffix match: the scheme is within it)
    return pattern if pattern.startswith("*") else "spiffe://" + pattern


def glob_regex(pattern: str) -> str:
    """namespaces and trust domains: a `*` anywhere stands for any run of characters."""
    return ".*".join(re.escape(part) for part in pattern.split("*"))


def service_account_of_pattern(pattern: str, policy_namespace: str) -> tuple[str, str]:
    """serviceAccounts: `ns/sa`, or `sa` of the policy's namespace."""
    namespace, _, account = pattern.rpartition("/")
    return namespace or policy_namespace, account


def _principal_matches(pattern: str, principal: str | None) -> bool:
    return principal is not None and _string(principal_pattern(pattern), principal)


def _glob(pattern: str, value: str | None) -> bool:
    """No value (plaintext) matches nothing."""
    return value is not None and re.fullmatch(glob_regex(pattern), value) is not None


def _service_account_matches(pattern: str, principal: str | None, policy_namespace: str) -> bool:
    found = _SPIFFE.match(principal or "")
    return found is not None and service_account_of_pattern(pattern, policy_namespace) == (found.group(2), found.group(3))


def _trust_domain_matches(pattern: str, principal: str | None) -> bool:
    found = _SPIFFE.match(principal or "")
    return found is not None and (pattern == "*" or _glob(pattern, found.group(1)))


def _in_block(block: str, address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(block, strict=False)
    except ValueError:
        return False


def path_template_regex(pattern: str) -> str | None:
    """A path template as a regular expression (its `{*}` one segment, its last `{**}` any
    number of them), or None if `pattern` is no template."""
    if "{*}" not in pattern and "{**}" not in pattern:
        return None
    return "".join("[^/]+" if part == "{*}" else ".*" if part == "{**}" else re.escape(part)
                   for part in re.split(r"(\{\*\*\}|\{\*\})", pattern))


def _path_matches(pattern: str, path: str) -> bool:
    """A path pattern: Istio's string match, or a template."""
    regex = path_template_regex(pattern)
    return _string(pattern, path) if regex is None else re.fullmatch(regex, path) is not None


_UNRESERVED = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")


def normalized_path(raw: str) -> str:
    """The path Istio's default normalization (BASE) leaves, without query or fragment:
    backslashes as slashes, percent-encoded unreserved characters decoded once, dot segments
    removed (RFC 3986); `%2F`, `%5C` and `//` are left as they are."""
    path = raw.split("?", 1)[0].split("#", 1)[0].replace("\\", "/")
    path = _UNRESERVED.sub(lambda m: unquote(m.group(0)), path)
    out: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
            continue
        if segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(segment)
    return "/".join(out) or "/"
