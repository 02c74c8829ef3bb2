"""`podnet check`: assertions about a cluster that a CI job can run.

An expectations file (YAML) lists what must hold:

    expectations:
    - from: shop/frontend            # a pod, or a workload (Deployment, StatefulSet, …): all its pods
      to: backend.shop:80            # a Service (svc[.ns]) with a port, a pod, IP:PORT, node/NAME, external
      reachable: true
    - from: {namespace: x}           # every pod of a namespace (optionally with labels: {…})
      to: {namespace: db}
      port: 5432
      reachable: false               # "nothing in x reaches db"
    - from: external
      url: https://shop.example.com/api
      reaches: backend:80            # the request ends at this Service (and port)
    - resolves: redis-0.redis.data   # a DNS name resolves (from: a pod to use its search list)
      from: shop/frontend

reachable: true means every source reaches every destination; false means none does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from podnet.api import fields
from podnet.controlplane import Cluster
from podnet.errors import InvalidInput, UsageError
from podnet.sim.trace import Tracer


@dataclass
class Outcome:
    index: int
    line: int
    text: str  # the expectation in words
    passed: bool
    detail: str


def load_expectations(path: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput([f"{path}: cannot read expectations: {exc}"]) from None
    data = yaml.SafeLoader("").construct_document(node) if node is not None else None
    items = data.get("expectations") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise InvalidInput([f"{path}:1: expected a list under `expectations:`"])
    sequence = node.value if isinstance(node, yaml.SequenceNode) else dict((k.value, v) for k, v in node.value)["expectations"].value
    out = []
    for i, (item, item_node) in enumerate(zip(items, sequence)):
        line = item_node.start_mark.line + 1
        if not isinstance(item, dict):
            raise InvalidInput([f"{path}:{line}: expectation {i + 1}: must be a mapping"])
        known = {"from", "to", "port", "protocol", "reachable", "url", "reaches", "resolves"}
        unknown = sorted(set(item) - known)
        if unknown:
            raise InvalidInput([f"{path}:{line}: expectation {i + 1}: unknown field {unknown[0]!r} "
                                f"(fields: {', '.join(sorted(known))})"])
        if "reachable" in item and not isinstance(item["reachable"], bool):
            raise InvalidInput([f"{path}:{line}: expectation {i + 1}: reachable must be true or false, "
                                f"not {item['reachable']!r}"])
        out.append((line, item))
    return out


class Checker:
    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.tracer = Tracer(cluster)

    # -- parties --------------------------------------------------------------------------------

    def sources(self, spec: Any) -> list[str]:
        """A from/to value → the parties it stands for ("ns/pod", "external", "node/X")."""
        if spec in (None, "external"):
            return ["external"]
        if isinstance(spec, dict):
            namespace = spec.get("namespace")
            labels = spec.get("labels") or {}
            pods = [p for p in self.cluster.of_kind("Pod", namespace)
                    if all(p.labels.get(k) == str(v) for k, v in labels.items())
                    and fields.pod_ip(p)]
            if not pods:
                raise UsageError(f"{spec}: selects no running pod")
            return [p.ref for p in pods]
        text = str(spec)
        if text.startswith("node/"):
            return [text]
        namespace, _, name = text.rpartition("/")
        namespace = namespace or "default"
        if self.cluster.get("Pod", namespace, name):
            return [f"{namespace}/{name}"]
        pods = self._workload_pods(namespace, name)
        if pods:
            return pods
        raise UsageError(f"{text!r}: no pod or workload of that name in namespace {namespace}")

    def _workload_pods(self, namespace: str, name: str) -> list[str]:
        owners = {(k, name) for k in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")}
        replicasets = {rs.name for rs in self.cluster.of_kind("ReplicaSet", namespace)
                       if any(r.get("kind") == "Deployment" and r.get("name") == name
                              for r in rs.metadata.get("ownerReferences") or [])}
        pods = []
        for pod in self.cluster.of_kind("Pod", namespace):
            for ref in pod.metadata.get("ownerReferences") or []:
                if (ref.get("kind"), ref.get("name")) in owners or (ref.get("kind") == "ReplicaSet" and ref.get("name") in replicasets):
                    if fields.pod_ip(pod):
                        pods.append(pod.ref)
        return pods

    def destinations(self, spec: Any) -> list[str]:
        if isinstance(spec, dict):
            return self.sources(spec)
        text = str(spec)
        if text == "external" or text.startswith("node/"):
            return [text]
        if "/" in text:
            return self.sources(text)
        return [text]  # a Service or DNS name, or IP[:PORT]: trace resolves it

    # -- the checks -----------------------------------------------------------------------------

    def check(self, item: dict[str, Any]) -> tuple[bool, str, str]:
        """(passed, the expectation in words, the evidence)"""
        if "resolves" in item:
            return self._resolves(item)
        if "url" in item:
            return self._url(item)
        if "to" not in item or "reachable" not in item:
            raise UsageError("an expectation needs `to` and `reachable` (or `url`/`reaches`, or `resolves`)")
        want = bool(item["reachable"])
        sources, targets = self.sources(item.get("from")), self.destinations(item["to"])
        port, protocol = item.get("port"), str(item.get("protocol", "TCP")).upper()
        to_text = _show(item["to"])
        if port and isinstance(item["to"], str) and ":" in item["to"]:
            port = None  # the port written in `to` is the one used
        words = f"{_show(item.get('from', 'external'))} {'can' if want else 'cannot'} reach {to_text}" + (
            f" on {port}/{protocol}" if port else "")
        wrong = []
        for src in sources:
            for dst in targets:
                if src == dst:
                    continue  # a pod always reaches itself
                result = self.tracer.trace(src, dst, port, protocol)
                # "can reach" must hold for every candidate endpoint; "cannot" for none
                ok = result.all_delivered if want else not any(
                    f.delivered for f in result.fates) and result.verdict == "dropped"
                if not ok:
                    wrong.append(f"{src} → {dst}: {result.verdict}: {result.reason}")
        pairs = len(sources) * len(targets)
        if wrong:
            shown = "; ".join(wrong[:3]) + (f"; … {len(wrong) - 3} more" if len(wrong) > 3 else "")
            return False, words, f"{len(wrong)} of {pairs} pairs differ: {shown}"
        return True, words, f"{pairs} pair{'s' if pairs != 1 else ''} checked"

    def _url(self, item: dict[str, Any]) -> tuple[bool, str, str]:
        url, wanted = str(item["url"]), item.get("reaches")
        reachable = item.get("reachable", True)
        words = f"{url} {'reaches ' + str(wanted) if wanted else ('is reachable' if reachable else 'is not reachable')}"
        failures, evidence = [], ""
        for src in self.sources(item.get("from", "external")):
            result = self.tracer.trace(src, url)
            ingress = result.ingress or {}
            if wanted:
                backend = str(ingress.get("backend") or "")
                name, _, port = str(wanted).partition(":")
                wanted_name, _, wanted_ns = name.partition(".")
                got_name, _, got_port = backend.partition(":")
                got_ns = str(ingress.get("ingress", "")).split("/")[0]
                ok = result.all_delivered and got_name == wanted_name and (not wanted_ns or wanted_ns == got_ns) and (
                    not port or self._same_port(ingress.get("ingress", ""), got_name, got_port, port))
                evidence = f"{result.verdict} via {backend or 'no backend'}: {result.reason}"
            else:
                ok = result.all_delivered if reachable else result.verdict == "dropped"
                evidence = f"{result.verdict}: {result.reason}"
            if not ok:
                failures.append(f"{src}: {evidence}")
        if failures:
            return False, words, "; ".join(failures[:3])
        return True, words, evidence

    def _same_port(self, ingress_ref: str, service: str, got: str, wanted: str) -> bool:
        """An Ingress names a Service port by number or name; either may be expected."""
        namespace = ingress_ref.split("/")[0] if "/" in ingress_ref else "default"
        svc = self.cluster.get("Service", namespace, service)
        for port in (svc.spec.get("ports") or []) if svc else []:
            names = {str(port.get("port")), str(port.get("name") or "")}
            if got in names and wanted in names:
                return True
        return got == wanted

    def _resolves(self, item: dict[str, Any]) -> tuple[bool, str, str]:
        name = str(item["resolves"])
        want = item.get("reachable", True) is not False
        src_text = self.sources(item.get("from"))[0] if item.get("from") else "external"
        src = self.tracer.source(src_text)
        _, addresses, failure = self.tracer.resolve(src, name)
        words = f"{name} resolves" + (f" from {src_text}" if item.get("from") else "")
        ok = bool(addresses) == want
        return ok, words, (", ".join(addresses) if addresses else failure or "no answer")

    def run(self, expectations: list[tuple[int, dict[str, Any]]]) -> list[Outcome]:
        outcomes = []
        for index, (line, item) in enumerate(expectations, start=1):
            try:
                passed, words, detail = self.check(item)
            except UsageError as exc:
                passed, words, detail = False, _show(item), f"cannot check: {exc}"
            outcomes.append(Outcome(index, line, words, passed, detail))
        return outcomes


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)
