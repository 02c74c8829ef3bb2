"""`describe`: kubectl's describe layout for the kinds networking people look at most."""

from __future__ import annotations

import time
from typing import Any

import yaml

from podnet import images
from podnet.api import defaults as api_defaults
from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.output import age
from podnet.output.columns import NONE, _map_text, _selector_text

Lines = list[str]
WIDTH = 20


def _kv(key: str, value: Any, indent: int = 0) -> str:
    label = " " * indent + f"{key}:"
    return f"{label:<{WIDTH}}{value}" if len(label) < WIDTH else f"{label}  {value}"


def _labels_block(key: str, mapping: dict[str, str] | None) -> Lines:
    items = sorted((mapping or {}).items())
    if not items:
        return [_kv(key, NONE)]
    lines = [_kv(key, f"{items[0][0]}={items[0][1]}")]
    lines += [" " * WIDTH + f"{k}={v}" for k, v in items[1:]]
    return lines


def _common(o: KubeObject) -> Lines:
    lines = [_kv("Name", o.name)]
    if o.namespace:
        lines.append(_kv("Namespace", o.namespace))
    lines += _labels_block("Labels", o.labels)
    lines += _labels_block("Annotations", o.annotations)
    return lines


def _probe_text(probe: dict[str, Any]) -> str:
    if "httpGet" in probe:
        h = probe["httpGet"]
        target = f"http-get {h.get('scheme', 'HTTP').lower()}://:{h.get('port')}{h.get('path', '/')}"
    elif "tcpSocket" in probe:
        target = f"tcp-socket :{probe['tcpSocket'].get('port')}"
    elif "exec" in probe:
        target = "exec " + str(probe["exec"].get("command"))
    else:
        target = "grpc" if "grpc" in probe else "?"
    return (f"{target} delay={probe.get('initialDelaySeconds', 0)}s timeout={probe.get('timeoutSeconds', 1)}s "
            f"period={probe.get('periodSeconds', 10)}s #success={probe.get('successThreshold', 1)} "
            f"#failure={probe.get('failureThreshold', 3)}")


def describe_pod(o: KubeObject, standins: bool = True) -> Lines:
    """kubectl's layout; each container also says what podnet runs for its image (podnet.images:
    a stand-in says so). `standins`: the cluster config's images mode."""
    lines = _common(o)[:2]
    if o.spec.get("serviceAccountName"):  # kubectl prints the line only for a pod that names one
        lines.append(_kv("Service Account", o.spec["serviceAccountName"]))
    lines.append(_kv("Node", f"{o.spec.get('nodeName') or NONE}/{fields.host_ip(o)}".rstrip("/")))
    started = age.parse(o.status.get("startTime"))
    if started is not None:  # kubectl's RFC 1123 time
        lines.append(_kv("Start Time", time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(started))))
    lines += _common(o)[2:]
    if fields.is_terminating(o) and not fields.is_terminal(o):  # kubectl's, for a pod being deleted
        lines += [_kv("Status", f"Terminating (lasts {age.until(o.metadata.get('deletionTimestamp'))})"),
                  _kv("Termination Grace Period", f"{o.metadata.get('deletionGracePeriodSeconds', 0)}s")]
    else:
        lines.append(_kv("Status", fields.phase(o) or "Pending"))
    lines.append(_kv("IP", fields.pod_ip(o)))
    lines += ["IPs:"] + ([f"  IP:  {ip}" for ip in fields.pod_ips(o)] or [f"  {NONE}"])
    owner = fields.controller_of(o)
    lines.append(_kv("Controlled By", f"{owner['kind']}/{owner['name']}" if owner else NONE))
    lines.append("Containers:")
    for c in o.spec.get("containers") or []:
        lines.append(f"  {c.get('name')}:")
        lines.append(_kv("Image", c.get("image", ""), 4))
        lines.append(_kv("Runs", images.behaviour_of(c, standins).summary(), 4))
        waiting = next(((s.get("state") or {}).get("waiting") for s in o.status.get("containerStatuses") or []
                        if s.get("name") == c.get("name")), None)
        if waiting:
            lines += [_kv("State", "Waiting", 4), _kv("Reason", waiting.get("reason", ""), 6)]
            if waiting.get("message"):
                lines.append(_kv("Message", waiting["message"], 6))
        ports = [f"{p['containerPort']}/{fields.protocol(p)}" + (f" ({p['name']})" if p.get("name") else "")
                 for p in c.get("ports") or []]
        lines.append(_kv("Port", ", ".join(ports) or NONE, 4))
        host_ports = [f"{p['hostPort']}/{fields.protocol(p)}" for p in c.get("ports") or [] if p.get("hostPort")]
        lines.append(_kv("Host Port", ", ".join(host_ports) or NONE, 4))
        if c.get("command"):
            lines.append(_kv("Command", " ".join(map(str, c["command"])), 4))
        if c.get("args"):
            lines.append(_kv("Args", " ".join(map(str, c["args"])), 4))
        for probe_name, label in (("livenessProbe", "Liveness"), ("readinessProbe", "Readiness"), ("startupProbe", "Startup")):
            if c.get(probe_name):
                lines.append(_kv(label, _probe_text(c[probe_name]), 4))
    lines.append("Conditions:")
    lines.append(f"  {'Type':<27}Status")
    for condition in fields.conditions(o):
        lines.append(f"  {condition.get('type', ''):<27}{condition.get('status', '')}")
        if condition.get("message"):
            lines.append(f"    {condition.get('reason', '')}: {condition['message']}")
    lines.append(_kv("DNS Policy", o.spec.get("dnsPolicy", "ClusterFirst")))
    if o.spec.get("hostNetwork"):
        lines.append(_kv("Host Network", "true"))
    lines.append(_kv("Node-Selectors", _map_text(o.spec.get("nodeSelector"))))
    return lines


def describe_service(o: KubeObject, endpoints: list[str]) -> Lines:
    spec = o.spec
    lines = _common(o)
    lines += [_kv("Selector", _map_text(spec.get("selector"))), _kv("Type", spec.get("type", api_defaults.SERVICE_TYPE))]
    if spec.get("type") == "ExternalName":
        lines.append(_kv("External Name", spec.get("externalName")))
    else:
        lines += [_kv("IP Family Policy", spec.get("ipFamilyPolicy", api_defaults.IP_FAMILY_POLICY)),
                  _kv("IP Families", ",".join(spec.get("ipFamilies") or api_defaults.IP_FAMILIES)),
                  _kv("IP", spec.get("clusterIP", NONE)), _kv("IPs", ",".join(spec.get("clusterIPs") or [NONE]))]
    if spec.get("externalIPs"):
        lines.append(_kv("External IPs", ",".join(spec["externalIPs"])))
    ingress = fields.load_balancer_addresses(o)
    if ingress:
        lines.append(_kv("LoadBalancer Ingress", ", ".join(ingress)))
    for p in spec.get("ports") or []:
        name = p.get("name") or "<unset>"
        lines.append(_kv("Port", f"{name}  {p.get('port')}/{fields.protocol(p)}"))
        if "targetPort" in p:
            lines.append(_kv("TargetPort", f"{p['targetPort']}/{fields.protocol(p)}"))
        if p.get("nodePort"):
            lines.append(_kv("NodePort", f"{name}  {p['nodePort']}/{fields.protocol(p)}"))
        lines.append(_kv("Endpoints", ",".join(endpoints_for_port(endpoints, p)) or NONE))
    lines.append(_kv("Session Affinity", spec.get("sessionAffinity", api_defaults.SESSION_AFFINITY)))
    if spec.get("externalTrafficPolicy"):
        lines.append(_kv("External Traffic Policy", spec["externalTrafficPolicy"]))
    lines.append(_kv("Internal Traffic Policy", spec.get("internalTrafficPolicy", api_defaults.TRAFFIC_POLICY)))
    if spec.get("healthCheckNodePort"):
        lines.append(_kv("HealthCheck NodePort", spec["healthCheckNodePort"]))
    return lines


def endpoints_for_port(endpoints: list[str], port: dict[str, Any]) -> list[str]:
    name = port.get("name") or ""
    return [e.split("|", 1)[1] for e in endpoints if e.split("|", 1)[0] == name]


def describe_node(o: KubeObject, pods: list[KubeObject]) -> Lines:
    status = o.status
    roles = sorted(k.split("/", 1)[1] for k in o.labels if k.startswith("node-role.kubernetes.io/")) or [NONE]
    lines = [_kv("Name", o.name), _kv("Roles", ",".join(roles))] + _common(o)[1:]
    taints = [f"{t['key']}" + (f"={t['value']}" if t.get("value") else "") + f":{t['effect']}" for t in o.spec.get("taints") or []]
    lines.append(_kv("Taints", ", ".join(taints) or NONE))
    lines.append("Addresses:")
    lines += [f"  {a['type']}:  {a['address']}" for a in status.get("addresses") or []]
    lines += [_kv("PodCIDR", o.spec.get("podCIDR", "")), _kv("PodCIDRs", ",".join(o.spec.get("podCIDRs") or []))]
    lines.append(f"Non-terminated Pods:          ({len(pods)} in total)")
    lines.append(f"  {'Namespace':<20}{'Name':<45}IP")
    for pod in pods:
        lines.append(f"  {pod.namespace:<20}{pod.name:<45}{fields.pod_ip(pod)}")
    return lines


def describe_networkpolicy(o: KubeObject) -> Lines:
    spec = o.spec
    lines = _common(o)
    lines.append("Spec:")
    selector = spec.get("podSelector") or {}
    lines.append(f"  PodSelector:     {_selector_text(selector) if selector else '<none> (Allowing the specific traffic to all pods in this namespace)'}")
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    for direction, rules_key, peer_word in (("Ingress", "ingress", "From"), ("Egress", "egress", "To")):
        if direction not in types:
            lines.append(f"  Not affecting {direction} traffic")
            continue
        rules = spec.get(rules_key)
        lines.append(f"  Allowing {direction.lower()} traffic:")
        if not rules:
            lines.append(f"    <none> (Selected pods are isolated for {direction.lower()} connectivity)")
            continue
        for i, rule in enumerate(rules):
            if i:
                lines.append("    ----------")
            ports = [f"{p.get('port', '<any>')}" + (f"-{p['endPort']}" if p.get("endPort") else "") + f"/{fields.protocol(p)}"
                     for p in rule.get("ports") or []]
            lines.append(f"    {'To Port' if direction == 'Ingress' else 'To Port'}: {', '.join(ports) or '<any> (traffic allowed to all ports)'}")
            peers = rule.get("from" if direction == "Ingress" else "to") or []
            lines.append(f"    {peer_word}:")
            if not peers:
                lines.append(f"      <any> (traffic not restricted by {'source' if direction == 'Ingress' else 'destination'})")
            for peer in peers:
                if "ipBlock" in peer:
                    block = peer["ipBlock"]
                    lines.append("      IPBlock:")
                    lines.append(f"        CIDR: {block.get('cidr')}")
                    lines.append(f"        Except: {', '.join(block.get('except') or [])}")
                    continue
                if "namespaceSelector" in peer:
                    lines.append(f"      NamespaceSelector: {_selector_text(peer['namespaceSelector']) if peer['namespaceSelector'] else '<none>'}")
                if "podSelector" in peer:
                    lines.append(f"      PodSelector: {_selector_text(peer['podSelector']) if peer['podSelector'] else '<none>'}")
    lines.append(f"  Policy Types: {', '.join(types)}")
    return lines


def _every_or_selector(selector: dict[str, Any] | None, every: str) -> str:
    """An admin policy's selector: an empty one selects everything (unlike a missing one)."""
    return _selector_text(selector) if selector else f"<all> ({every})"


def _admin_peer_lines(peer: dict[str, Any], indent: str) -> Lines:
    if "namespaces" in peer:
        return [f"{indent}Namespaces: {_every_or_selector(peer['namespaces'], 'every namespace')}"]
    if "pods" in peer:
        pods = peer["pods"] or {}
        return [f"{indent}Pods:",
                f"{indent}  NamespaceSelector: {_every_or_selector(pods.get('namespaceSelector'), 'every namespace')}",
                f"{indent}  PodSelector: {_every_or_selector(pods.get('podSelector'), 'every pod')}"]
    if "nodes" in peer:
        return [f"{indent}Nodes: {_every_or_selector(peer['nodes'], 'every node')}"]
    if "networks" in peer:
        return [f"{indent}Networks: {', '.join(peer['networks'])}"]
    return [f"{indent}{key}: {value}" for key, value in peer.items()]


def _admin_port_text(port: dict[str, Any]) -> str:
    if "portNumber" in port:
        number = port["portNumber"]
        return f"{number.get('port')}/{number.get('protocol') or 'TCP'}"
    if "portRange" in port:
        span = port["portRange"]
        return f"{span.get('start')}-{span.get('end')}/{span.get('protocol') or 'TCP'}"
    return f"{port.get('namedPort')} (named port)"


def describe_admin_network_policy(o: KubeObject) -> Lines:
    """AdminNetworkPolicy and BaselineAdminNetworkPolicy: kubectl prints a CRD's fields as they
    are; this is laid out like a NetworkPolicy instead, rules in the order they are evaluated."""
    spec = o.spec
    lines = _common(o)
    if o.kind == "AdminNetworkPolicy":
        lines.append(_kv("Priority", spec.get("priority")))
    lines.append("Subject:")
    lines += _admin_peer_lines(spec.get("subject") or {}, "  ")
    for direction, peer_word in (("ingress", "From"), ("egress", "To")):
        rules = spec.get(direction) or []
        if not rules:
            lines.append(f"{direction.capitalize()} rules: <none> (this policy does not affect {direction} traffic)")
            continue
        lines.append(f"{direction.capitalize()} rules (in order, the first rule that matches decides):")
        for i, rule in enumerate(rules):
            if i:
                lines.append("  ----------")
            lines.append(f"  [{i}] {rule.get('name') or '<unnamed>'}: {rule.get('action')}")
            ports = [_admin_port_text(port) for port in rule.get("ports") or []]
            lines.append(f"    Ports: {', '.join(ports) or '<any>'}")
            lines.append(f"    {peer_word}:")
            for peer in rule.get("from" if direction == "ingress" else "to") or []:
                lines += _admin_peer_lines(peer, "      ")
    return lines


def _backend_text(backend: dict[str, Any] | None) -> str:
    if not backend:
        return NONE
    service = backend.get("service")
    if service:
        port = service.get("port") or {}
        return f"{service.get('name')}:{port.get('number', port.get('name'))}"
    resource = backend.get("resource") or {}
    return f"{resource.get('kind')}/{resource.get('name')}"


def describe_ingress(o: KubeObject) -> Lines:
    spec = o.spec
    lines = _common(o)[:2] + [_kv("Ingress Class", spec.get("ingressClassName") or NONE),
                              _kv("Default backend", _backend_text(spec.get("defaultBackend")))]
    if spec.get("tls"):
        lines.append("TLS:")
        lines += [f"  {t.get('secretName', '')} terminates {','.join(t.get('hosts') or [])}" for t in spec["tls"]]
    lines.append("Rules:")
    lines.append(f"  {'Host':<20}{'Path':<28}Backends")
    lines.append(f"  {'----':<20}{'----':<28}--------")
    for rule in spec.get("rules") or []:
        lines.append(f"  {rule.get('host') or '*':<20}")
        for path in (rule.get("http") or {}).get("paths") or []:
            lines.append(f"  {'':<20}{(path.get('path') or '/') + ' (' + path.get('pathType', '') + ')':<28}{_backend_text(path.get('backend'))}")
    lines += _common(o)[2:]
    return lines


def describe_generic(o: KubeObject) -> Lines:
    lines = _common(o)
    body = {k: v for k, v in o.body.items() if k not in ("apiVersion", "kind", "metadata")}
    lines += yaml.safe_dump(body, sort_keys=True, default_flow_style=False).rstrip().splitlines()
    return lines


# ---------------------------------------------------------------- ServiceAccounts and RBAC
# kubectl writes these through a tabwriter (padding 2): a run of lines with a tab-ended cell
# aligns that cell; the last cell of a line is not padded, so an empty one leaves the padding.


def _tabbed(rows: list[list[str]]) -> Lines:
    """Rows of cells, the last one free, aligned as text/tabwriter aligns one column block."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + 2)
    return ["".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + row[-1] for row in rows]


def _meta_rows(key: str, mapping: dict[str, str] | None) -> list[list[str]]:
    items = sorted((mapping or {}).items())
    if not items:
        return [[f"{key}:", NONE]]
    return [[f"{key}:" if i == 0 else "", f"{k}={v}"] for i, (k, v) in enumerate(items)]


def _go_list(values: list[str]) -> str:
    return "[" + " ".join(values) + "]"


def _go_quoted_list(values: list[str]) -> str:
    return "[" + " ".join('"' + v + '"' for v in values) + "]"


def _rule_sort_key(rule: dict[str, Any]) -> str:
    """rbacv1helpers.String(rule): what kubectl sorts the compacted rules by."""
    parts = []
    for field_name, shown in (("apiGroups", "APIGroups"), ("resources", "Resources"),
                              ("nonResourceURLs", "NonResourceURLs"), ("resourceNames", "ResourceNames"),
                              ("verbs", "Verbs")):
        if rule.get(field_name):
            parts.append(f"{shown}:{_go_quoted_list(rule[field_name])}")
    return "PolicyRule{" + ", ".join(parts) + "}"


def _compact_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kubectl's BreakdownRule (one group, resource, verb and name each), then CompactRules
    (the verbs of one group/resource/name merged), sorted as kubectl sorts them."""
    simple: dict[tuple[str, str, str], dict[str, Any]] = {}
    others: list[dict[str, Any]] = []
    for rule in rules:
        verbs = list(rule.get("verbs") or [])
        names = list(rule.get("resourceNames") or []) or [None]
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in verbs:
                    for name in names:
                        key = (group, resource, name or "")
                        merged = simple.setdefault(key, {"apiGroups": [group], "resources": [resource], "verbs": [],
                                                         **({"resourceNames": [name]} if name else {})})
                        if verb not in merged["verbs"]:
                            merged["verbs"].append(verb)
        for url in rule.get("nonResourceURLs") or []:
            others += [{"nonResourceURLs": [url], "verbs": [verb]} for verb in verbs]
    return sorted(others + list(simple.values()), key=_rule_sort_key)


def _resource_text(rule: dict[str, Any]) -> str:
    """CombineResourceGroup: "deployments.apps", "deployments.apps/scale", "pods"."""
    resources, groups = rule.get("resources") or [], rule.get("apiGroups") or []
    if not resources:
        return ""
    resource, _, sub = resources[0].partition("/")
    text = resource + (f".{groups[0]}" if groups and groups[0] else "")
    return text + (f"/{sub}" if sub else "")


def describe_role(o: KubeObject) -> Lines:
    """kubectl describe role/clusterrole: the rules broken down to one resource per line."""
    lines = _tabbed([["Name:", o.name], *_meta_rows("Labels", o.labels), *_meta_rows("Annotations", o.annotations)])
    lines.append("PolicyRule:")
    rows = [["  Resources", "Non-Resource URLs", "Resource Names", "Verbs"],
            ["  ---------", "-----------------", "--------------", "-----"]]
    for rule in _compact_rules([r for r in o.body.get("rules") or [] if isinstance(r, dict)]):
        rows.append(["  " + _resource_text(rule), _go_list(rule.get("nonResourceURLs") or []),
                     _go_list(rule.get("resourceNames") or []), _go_list(rule.get("verbs") or [])])
    return lines + _tabbed(rows)


def describe_binding(o: KubeObject) -> Lines:
    """kubectl describe rolebinding/clusterrolebinding."""
    ref = o.body.get("roleRef") or {}
    lines = _tabbed([["Name:", o.name], *_meta_rows("Labels", o.labels), *_meta_rows("Annotations", o.annotations)])
    lines.append("Role:")
    lines += _tabbed([["  Kind:", ref.get("kind", "")], ["  Name:", ref.get("name", "")]])
    lines.append("Subjects:")
    rows = [["  Kind", "Name", "Namespace"], ["  ----", "----", "---------"]]
    rows += [["  " + s.get("kind", ""), s.get("name", ""), s.get("namespace", "")]
             for s in o.body.get("subjects") or [] if isinstance(s, dict)]
    return lines + _tabbed(rows)


def describe_service_account(o: KubeObject) -> Lines:
    """kubectl describe serviceaccount (no token Secrets: pods get projected tokens)."""
    rows = [["Name:", o.name], ["Namespace:", o.namespace], *_meta_rows("Labels", o.labels),
            *_meta_rows("Annotations", o.annotations)]
    for header, refs in (("Image pull secrets:", o.body.get("imagePullSecrets")),
                         ("Mountable secrets: ", o.body.get("secrets")), ("Tokens:            ", None)):
        names = [r.get("name", "") for r in refs or [] if isinstance(r, dict)]
        rows += [[header if i == 0 else " " * len(header), name] for i, name in enumerate(names)] or [[header, NONE]]
    return _tabbed(rows)
