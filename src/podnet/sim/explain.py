"""`podnet explain`: what is wrong with a set of manifests, and why — with a hint each."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from podnet import images
from podnet.api import fields
from podnet.api import labels as selectors
from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.controlplane.pods import find_named_port, serving_containers
from podnet.semantics.containerenv import CREATE_CONFIG_ERROR, ContainerConfigError, resolve_environment
from podnet.semantics.corefile import CorefileError
from podnet.semantics import ingress as ingress_semantics
from podnet.semantics.dns import ClusterDNS
from podnet.semantics.networkpolicy import EGRESS, INGRESS, PolicyEngine
from podnet.sim.trace import Tracer

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
# host:port or scheme://host[:port] inside env values and args
_HOST_TOKEN = re.compile(r"(?:(?:https?|tcp|udp|redis|postgres(?:ql)?|mysql|amqp|grpc)://)?"
                         r"(?P<host>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)"
                         r"(?::(?P<port>\d{1,5}))")


@dataclass(frozen=True)
class Finding:
    severity: str
    object: str  # "Kind ns/name"
    message: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity, "object": self.object, "message": self.message, "hint": self.hint}


def findings_from_errors(lines: list[str]) -> list[Finding]:
    """Invalid input: each located error is a finding (nothing else can be computed)."""
    out = []
    for line in lines:
        match = re.match(r"^(?P<where>[^:]+:\d+): (?P<kind>[A-Za-z]+) (?P<ref>\S+): (?P<rest>.*)$", line)
        if match:
            out.append(Finding("error", f"{match['kind']} {match['ref']}", match["rest"], f"at {match['where']}"))
        else:
            out.append(Finding("error", "input", line))
    return out


class Explainer:
    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.pods_by_ns: dict[str, list[KubeObject]] = {}
        for pod in cluster.of_kind("Pod"):
            self.pods_by_ns.setdefault(pod.namespace, []).append(pod)
        self.service_names = sorted({f"{s.name}.{s.namespace}" for s in cluster.of_kind("Service")})
        self._checked_owners: set[tuple] = set()
        self._service_links: dict = {}  # containerenv.service_environment's, for this cluster
        self._dns_broken = False  # the Corefile stops the DNS: said once, not for every name

    def findings(self) -> list[Finding]:
        found: list[Finding] = []
        for svc in self.cluster.of_kind("Service"):
            found += self._service(svc)
        for ingress in self.cluster.of_kind("Ingress"):
            found += self._ingress(ingress)
        found += self._policies()
        found += self._dns()
        for pod in self.cluster.of_kind("Pod"):
            found += self._pod(pod)
        return sorted(found, key=lambda f: (SEVERITY_ORDER[f.severity], f.object, f.message))

    # -- Services -------------------------------------------------------------------------------

    def _service(self, svc: KubeObject) -> list[Finding]:
        where = f"Service {svc.ref}"
        selector = svc.spec.get("selector")
        if svc.spec.get("type") == "ExternalName":
            return []
        if not selector:
            has_endpoints = any(s.labels.get("kubernetes.io/service-name") == svc.name and s.body.get("endpoints")
                                for s in self.cluster.of_kind("EndpointSlice", svc.namespace))
            if has_endpoints or (svc.namespace, svc.name) == ("default", "kubernetes"):
                return []
            return [Finding("warning", where, "has no selector and no Endpoints or EndpointSlices: nothing backs it",
                            "add a selector, or Endpoints for the addresses it should reach")]
        sel = selectors.from_set(selector)
        pods = [p for p in self.pods_by_ns.get(svc.namespace, []) if sel.matches(p.labels)]
        if not pods:
            return [Finding("warning", where, f"selector {sel} matches no pod in namespace {svc.namespace}",
                            self._closest_labels(svc.namespace, selector))]
        out = []
        for port in svc.spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            protocol = fields.protocol(port)
            label = f"port {port.get('name') or port.get('port')}"
            if isinstance(target, str) and not target.isdigit():
                missing = [p.name for p in pods if find_named_port(serving_containers(p), target, protocol) is None]
                if len(missing) == len(pods):
                    out.append(Finding("error", where, f"{label}: no selected pod has a containerPort named "
                                                       f"{target!r} ({protocol})",
                                       "name the containerPort in the pod template, or use a number"))
                    continue
                if missing:
                    out.append(Finding("warning", where, f"{label}: targetPort {target!r} is missing on "
                                                         f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}",
                                       "those pods are left out of this port's endpoints"))
                numbers = [(p, find_named_port(serving_containers(p), target, protocol)) for p in pods
                           if p.name not in missing]
            else:
                numbers = [(p, int(target)) for p in pods]
            refused = [p.name for p, number in numbers
                       if images.pod_serving(p, self.cluster, number, protocol, self._service_links).serving is False]
            if refused and len(refused) == len(numbers):
                out.append(Finding("error", where, f"{label}: nothing in the selected pods listens on "
                                                   f"{numbers[0][1]}/{protocol}",
                                   "check targetPort against the port the container really serves"))
            elif refused:
                out.append(Finding("warning", where, f"{label}: {', '.join(refused[:3])} do not listen on the target port"))
        return out

    def _closest_labels(self, namespace: str, selector: dict[str, str]) -> str:
        seen = {f"{k}={v}" for p in self.pods_by_ns.get(namespace, []) for k, v in p.labels.items()}
        hints = []
        for key, value in selector.items():
            close = difflib.get_close_matches(f"{key}={value}", sorted(seen), n=1)
            if close and close[0] != f"{key}={value}":
                hints.append(f"did you mean {close[0]}?")
        return " ".join(hints) or "no pod in the namespace carries these labels"

    # -- Ingress --------------------------------------------------------------------------------

    def _ingress(self, ingress: KubeObject) -> list[Finding]:
        out = []
        unmodelled = ingress_semantics.unmodelled_warning(ingress)
        if unmodelled is not None:
            security = "WITHOUT" in unmodelled
            out.append(Finding("warning", f"Ingress {ingress.ref}", unmodelled.split(": ", 1)[1],
                               "podnet's nginx serves this Ingress without that protection, and trace answers "
                               "as if it were not asked for" if security else
                               "trace and the cluster's nginx route as if they were absent"))
        backends = []
        if ingress.spec.get("defaultBackend"):
            backends.append(("defaultBackend", ingress.spec["defaultBackend"]))
        for rule in ingress.spec.get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                backends.append((f"{rule.get('host') or '*'}{path.get('path', '')}", path.get("backend") or {}))
        for where, backend in backends:
            service = backend.get("service")
            if not service:
                continue
            svc = self.cluster.get("Service", ingress.namespace, service.get("name"))
            if svc is None:
                close = difflib.get_close_matches(service.get("name"), [s.name for s in self.cluster.of_kind("Service", ingress.namespace)], n=1)
                out.append(Finding("error", f"Ingress {ingress.ref}", f"{where}: backend Service {service.get('name')!r} "
                                                                     f"does not exist in {ingress.namespace}",
                                   f"did you mean {close[0]!r}?" if close else "ingress-nginx answers 503 for it"))
                continue
            port = service.get("port") or {}
            ports = svc.spec.get("ports") or []
            if "number" in port and not any(p.get("port") == port["number"] for p in ports) or \
                    "name" in port and not any(p.get("name") == port["name"] for p in ports):
                have = ", ".join(str(p.get("name") or p.get("port")) for p in ports)
                out.append(Finding("error", f"Ingress {ingress.ref}", f"{where}: Service {svc.name} has no port "
                                                                     f"{port.get('number', port.get('name'))}",
                                   f"its ports: {have}"))
        return out

    # -- NetworkPolicy --------------------------------------------------------------------------

    def _policies(self) -> list[Finding]:
        engine = PolicyEngine(self.cluster)
        namespaces = self.cluster.of_kind("Namespace")
        out = []
        for policy in engine.policies:
            where = f"NetworkPolicy {policy.ref}"
            selected = [ep for ep in engine.pods.values() if ep.namespace == policy.namespace and policy.selects(ep)]
            if not selected:
                out.append(Finding("warning", where, f"podSelector selects no pod in namespace {policy.namespace}",
                                   "a policy that selects nothing has no effect"))
            for direction in (INGRESS, EGRESS):
                if not policy.isolates(direction):
                    continue
                for rule in policy.rules(direction):
                    for peer in rule.peers or ():
                        ns_selector = getattr(peer, "namespace_selector", None)
                        if ns_selector is not None and not any(ns_selector.matches(engine.ns_labels(n.name)) for n in namespaces):
                            out.append(Finding("warning", where, f"{direction} rule {rule.index}: namespaceSelector "
                                                                 f"{ns_selector} matches no namespace",
                                               "namespaces are matched by their labels, e.g. kubernetes.io/metadata.name"))
        out += self._admin_policies(engine)
        for ep in engine.pods.values():
            for direction in (INGRESS, EGRESS):
                isolating = engine.isolating(ep, direction)
                if isolating and not any(policy.rules(direction) for policy in isolating):
                    out.append(Finding("info", f"Pod {ep.ref}", f"isolated for {direction.capitalize()} by "
                                                                f"{', '.join(p.ref for p in isolating)} with no rule: "
                                                                f"all {direction} is denied",
                                       "intended for a default-deny; otherwise add a rule"))
        return out

    @staticmethod
    def _admin_policies(engine: PolicyEngine) -> list[Finding]:
        """AdminNetworkPolicies and the baseline: a subject without pods, a peer that matches
        nothing (both have no effect, and are usually a label typo)."""
        out = []
        tiers = list(engine.admin_policies) + ([engine.baseline] if engine.baseline is not None else [])
        for policy in tiers:
            if not any(policy.selects(ep) for ep in engine.pods.values()):
                out.append(Finding("warning", policy.ref, f"subject ({policy.subject}) selects no pod",
                                   "a policy that selects nothing has no effect"))
            for direction in (INGRESS, EGRESS):
                for rule in policy.rules(direction):
                    if not any(engine.peer_networks(peer) for peer in rule.peers):
                        out.append(Finding("warning", policy.ref, f"{rule.label}: no peer matches anything "
                                                                  f"({' or '.join(map(str, rule.peers))})",
                                           "this rule never applies; namespaces are matched by their labels, "
                                           "e.g. kubernetes.io/metadata.name"))
        return out

    # -- names in env and args ------------------------------------------------------------------

    # -- cluster DNS ----------------------------------------------------------------------------

    def _dns(self) -> list[Finding]:
        """A Corefile the DNS server refuses to run: no name resolves in the cluster."""
        try:
            ClusterDNS(self.cluster)
        except CorefileError as error:
            self._dns_broken = True
            return [Finding("error", "ConfigMap kube-system/coredns",
                            f"the cluster DNS would not start: Corefile line {error.line}: {error.what}",
                            "no name resolves in the cluster until the Corefile is one podnet's DNS server runs")]
        return []

    def _pod(self, pod: KubeObject) -> list[Finding]:
        if not fields.pod_ip(pod):
            reason = next((c.get("message") for c in fields.conditions(pod)
                           if c.get("status") == "False"), "")
            return [Finding("warning", f"Pod {pod.ref}", f"is not running: {reason or 'no IP'}")]
        owner = fields.controller_of(pod)
        if owner:  # replicas share their template: look at one pod per controller
            key = (pod.namespace, owner.get("kind"), owner.get("name"))
            if key in self._checked_owners:
                return []
            self._checked_owners.add(key)
        out = []
        tracer = getattr(self, "_tracer", None) or Tracer(self.cluster)
        self._tracer = tracer
        source = tracer.addresses.pod_party(pod)
        seen = set()
        for container in pod.spec.get("containers") or []:
            if images.behaviour_of(container, self.cluster.config.standins).runs == images.UNPULLABLE:
                out.append(Finding("error", f"Pod {pod.ref}", f"container {container.get('name')}: image "
                                   f"{container.get('image')} cannot be pulled (images: strict): ErrImagePull, "
                                   "the pod never runs", "use an image podnet runs (README: what runs for each "
                                   "image), or images: standin for a stand-in serving its declared ports"))
                continue
            try:  # the environment kubelet gives it (the runtime's rule): ConfigMap and Secret values too
                environment = resolve_environment(pod, container, self.cluster, cache=self._service_links)
            except ContainerConfigError as error:
                hint = ("apply what its env or envFrom names (it starts once that is there), or mark the "
                        "reference optional: true") if error.reason == CREATE_CONFIG_ERROR else ""
                out.append(Finding("error", f"Pod {pod.ref}", f"container {container.get('name')}: {error.reason}: "
                                   f"{error.message}: the container is not created", hint))
                continue
            for skipped in environment.skipped:
                out.append(Finding("warning", f"Pod {pod.ref}", f"container {container.get('name')}: "
                                   f"{skipped.message}", "a name that is empty or holds '=' cannot be an environment "
                                   "variable: change the envFrom prefix"))
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                out += self._probe(pod, container, kind)
            variables = environment.own.items()
            hosts = [value + ":0" for name, value in variables
                     if value and re.search(r"_(HOST|HOSTNAME|ADDR|ADDRESS|SERVER|SERVICE)$", name)
                     and _HOST_TOKEN.fullmatch(value.lower() + ":0")]
            texts = hosts + [value for _, value in variables if value]
            texts += [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
            for text in texts:
                for match in _HOST_TOKEN.finditer(text.lower()):
                    host = match["host"]
                    if host in seen or not self._looks_in_cluster(host) or self._dns_broken:
                        continue
                    seen.add(host)
                    _, addresses, failure = tracer.resolve(source, host)
                    if not addresses and not (failure or "").startswith(f"{host} is an ExternalName"):
                        close = difflib.get_close_matches(host.split(".svc")[0], self.service_names
                                                          + [n.split(".")[0] for n in self.service_names], n=1)
                        out.append(Finding("warning", f"Pod {pod.ref}", f"container {container.get('name')} names "
                                                                        f"{host!r}, which does not resolve",
                                           f"did you mean {close[0]!r}?" if close else failure or ""))
        return out

    def _probe(self, pod: KubeObject, container: dict, kind: str) -> list[Finding]:
        """A probe on a port that nothing in a known image serves never succeeds."""
        probe = container.get(kind) or {}
        handler = probe.get("httpGet") or probe.get("tcpSocket")
        if not handler or handler.get("host"):
            return []
        port = handler.get("port")
        if isinstance(port, str) and not port.isdigit():
            port = find_named_port([container], port)  # kubelet looks in the probe's own container only
            if port is None:
                return [Finding("error", f"Pod {pod.ref}", f"container {container.get('name')}: {kind} names port "
                                                            f"{handler.get('port')!r}, which the container does not declare")]
        answer = images.pod_serving(pod, self.cluster, int(port), "TCP", self._service_links)
        if answer.serving is False:
            effect = "the pod never becomes Ready" if kind == "readinessProbe" else "the container keeps being restarted"
            return [Finding("warning", f"Pod {pod.ref}", f"container {container.get('name')}: {kind} on port {port}: "
                                                           f"{answer.detail}", effect)]
        return []

    def _looks_in_cluster(self, host: str) -> bool:
        """A bare name, or one under a namespace or the cluster domain: meant for the cluster DNS."""
        if re.fullmatch(r"\d+(\.\d+){3}", host) or host in ("localhost",):
            return False
        labels = host.split(".")
        domain = self.cluster.config.networking.dns_domain
        namespaces = {n.name for n in self.cluster.of_kind("Namespace")}
        return len(labels) == 1 or host.endswith(".svc") or host.endswith(domain) or labels[1] in namespaces
