"""Ingress routing as ingress-nginx does it: which Ingresses a controller serves, the nginx
servers and locations it builds from them, and where one HTTP request goes.

Two layers, kept apart on purpose (docs/specs/ingress-nginx.md §5):

- **the Ingress spec** (`host_matches`, `path_matches`, `spec_best_match`): exact and wildcard
  hosts, Exact and element-wise Prefix paths, longest path first and Exact over Prefix on a tie —
  what kubernetes.io's Ingress page and the ingress-controller-conformance suite describe;
- **ingress-nginx** (`IngressController`): the nginx configuration the controller renders and
  nginx's own matching over it. This is what `podnet trace http://…` answers with, and the route
  table (`IngressController.servers()` / `routes()`) is plain frozen data that the linux data
  plane renders into a real nginx.conf, so the two cannot disagree.

How ingress-nginx turns Ingresses into nginx (internal/ingress/controller/controller.go,
location.go, template/template.go, internal/k8s/main.go, store/store.go; nginx's
ngx_http_core_module.c for the matching):

1. Ingresses are ordered by creationTimestamp, oldest first; identical timestamps (podnet's input
   has none, so all are identical) by "ns/name" in *descending* order (`sortIngressSlice`). The
   first Ingress in this order wins every conflict below.
2. One nginx server per host named by any rule, plus the catch-all server `_` (rules without a
   host, and every request whose Host has no server of its own). Each server starts with a root
   location `/` (Prefix) that proxies to the default backend: the controller's own 404, or the
   `spec.defaultBackend` of the Ingress that created the server (the first with a rule for that
   host). `_`'s root takes the defaultBackend of the first Ingress that has a defaultBackend and
   *no rules at all*; an Ingress with rules and a defaultBackend does not change `_`. `_` also
   has nginx's own `location /healthz` (200) and `location /nginx_status` (403 from outside).
3. `pathType: ImplementationSpecific` (and a missing one) is turned into Prefix
   (`SetDefaultNGINXPathType`). An empty path is `/`. A path equal to an existing location of
   the same type is dropped (first Ingress wins), except that a Prefix `/` takes over a root
   location — unless that root is `_`'s and already went to a rule-less Ingress's defaultBackend.
4. Locations are sorted by path, descending, then (stable) by path length, descending. Then every
   Prefix location that has no rewrite-target and no use-regex becomes `location /foo/` plus an
   exact `location = /foo` (no exact copy when an Exact /foo exists; `/` stays as is).
5. If any location of a server has use-regex, or a rewrite-target different from its path, every
   location of that server is written `location ~* "^<path>"` (case-insensitive, anchored at the
   start only, Exact included) and nginx takes the first that matches, in the order of 4.
   Otherwise nginx's static rules apply: `= path` first, then the longest prefix; a request equal
   to a location's name minus its trailing slash gets a 301 to the name with the slash (nginx's
   auto-redirect for locations ending in `/` that proxy_pass).
6. In a location with a rewrite-target (other than its path) nginx runs
   `rewrite "(?i)<path>" <target> break;`: the whole URI is replaced, $1..$9 are the path's groups,
   the query string is kept.
7. Then, in nginx's phase order: `app-root` (302 for `/`), the location's rewrite, the HTTP→HTTPS
   redirect (308 when the request is http and the server has a certificate — any host of an
   Ingress with a non-empty `spec.tls` — unless `ssl-redirect: "false"`, or always with
   `force-ssl-redirect`; lua_ingress.lua sends it to `https://host` + the request URI with a
   trailing `/` dropped unless `preserve-trailing-slash`), then the balancer's check in the same
   rewrite phase (balancer.lua `rewrite()`): no Service, no such port or no ready endpoint
   (terminating ones are not ready; ingress-nginx has no fallback to them) → 503,
   then the access phase (`allowlist-source-range`, formerly whitelist-: a client outside the
   ranges gets 403). Before all of these, as soon as
   the location is chosen, a body larger than its `proxy-body-size` (default 1m) gets 413; a
   location whose annotation ingress-nginx rejects (a source range that is not a CIDR) answers
   503. `backend-protocol` (HTTPS, GRPC, GRPCS) and `x-forwarded-prefix` do not change the
   route; they are carried in the Route for the nginx.conf.
   ingress-nginx proxies straight to the endpoints (pod IP:targetPort), not to the ClusterIP.

Not modelled (they do not change which backend is chosen, or need live state): canary Ingresses
(they add no locations; their traffic split is not simulated), server-alias, the default-backend
annotation, custom error pages, auth, rate limits, snippets. Every such annotation on an Ingress
is named in a warning (`unmodelled_warning`: in `explain`, in the route `trace` shows, and in the
controller's Warning events), which says when it is a protection the Ingress is served without.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import unquote, urlsplit

from podnet.api import fields
from podnet.api.objects import KubeObject

if TYPE_CHECKING:
    from podnet.controlplane import Cluster

CONTROLLER = "k8s.io/ingress-nginx"
CLASS_NAME = "nginx"
CATCH_ALL = "_"
ROOT = "/"
EXACT, PREFIX, IMPLEMENTATION_SPECIFIC = "Exact", "Prefix", "ImplementationSpecific"

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io/"
REWRITE_TARGET = ANNOTATION_PREFIX + "rewrite-target"
USE_REGEX = ANNOTATION_PREFIX + "use-regex"
APP_ROOT = ANNOTATION_PREFIX + "app-root"
SSL_REDIRECT = ANNOTATION_PREFIX + "ssl-redirect"
FORCE_SSL_REDIRECT = ANNOTATION_PREFIX + "force-ssl-redirect"
PRESERVE_TRAILING_SLASH = ANNOTATION_PREFIX + "preserve-trailing-slash"
ALLOWLIST_SOURCE_RANGE = ANNOTATION_PREFIX + "allowlist-source-range"
WHITELIST_SOURCE_RANGE = ANNOTATION_PREFIX + "whitelist-source-range"  # the older name, still read
PROXY_BODY_SIZE = ANNOTATION_PREFIX + "proxy-body-size"
BACKEND_PROTOCOL = ANNOTATION_PREFIX + "backend-protocol"
X_FORWARDED_PREFIX = ANNOTATION_PREFIX + "x-forwarded-prefix"
DEFAULT_PROXY_BODY_SIZE = "1m"       # ConfigMap proxy-body-size default (client_max_body_size)
BACKEND_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPCS", "AUTO_HTTP")
CANARY = ANNOTATION_PREFIX + "canary"

# the annotations above are the ones podnet reads (canary-* go with `canary`'s own warning); any
# other of ingress-nginx's is neither simulated nor rendered into the cluster's nginx.conf, and
# `unmodelled_annotations` says so — loudest for those that protect a backend
MODELLED_ANNOTATIONS = frozenset({REWRITE_TARGET, USE_REGEX, APP_ROOT, SSL_REDIRECT, FORCE_SSL_REDIRECT,
                                  PRESERVE_TRAILING_SLASH, ALLOWLIST_SOURCE_RANGE, WHITELIST_SOURCE_RANGE,
                                  PROXY_BODY_SIZE, BACKEND_PROTOCOL, X_FORWARDED_PREFIX, CANARY})
_PROTECTIONS = (("auth-", "authentication"), ("limit-", "rate and connection limits"),
                ("denylist-source-range", "a source deny list"), ("blacklist-source-range", "a source deny list"),
                ("enable-modsecurity", "the web application firewall"),
                ("modsecurity-", "the web application firewall"), ("satisfy", "authentication"))

HEALTHZ_PATH = "/healthz"            # nginx.tmpl: `location /healthz { return 200; }` in server _
NGINX_STATUS_PATH = "/nginx_status"  # stub_status, `deny all` but 127.0.0.1: 403 from outside
HTTP_REDIRECT_CODE = 308             # ConfigMap http-redirect-code default

_ZERO_TIME = datetime.min.replace(tzinfo=timezone.utc)


# ================================================================ the Ingress spec

def host_matches(rule_host: str, request_host: str) -> bool:
    """Ingress spec host matching: "" matches every host; `*.foo.com` exactly one extra label."""
    host = _canonical_host(request_host)
    if not rule_host:
        return True
    rule_host = rule_host.lower()
    if rule_host.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == rule_host[2:]
    return host == rule_host


def path_matches(path_type: str, path: str, request_path: str) -> bool:
    """Ingress spec path matching, case-sensitive.

    Exact: the same string. Prefix: element-wise on '/'-separated elements, a trailing slash
    ignored on either side (`/foo` matches `/foo`, `/foo/`, `/foo/bar`, not `/foobar`).
    ImplementationSpecific: as ingress-nginx treats it, i.e. Prefix.
    """
    if path_type == EXACT:
        return request_path == path
    wanted = _elements(path)
    return _elements(request_path)[: len(wanted)] == wanted


def spec_best_match(paths: Sequence[tuple[str, str]], request_path: str) -> int | None:
    """Index of the (pathType, path) the Ingress spec picks: the longest matching path (a trailing
    slash does not count), Exact over Prefix when equally long; None when nothing matches."""
    best: tuple[int, int, int] | None = None
    for index, (path_type, path) in enumerate(paths):
        if path_matches(path_type, path, request_path):
            key = (len(path.rstrip("/")), path_type == EXACT, -index)
            best = key if best is None or key > best else best
    return None if best is None else -best[2]


def _elements(path: str) -> list[str]:
    return [element for element in path.split("/") if element]


# ================================================================ the route table

@dataclass(frozen=True)
class Route:
    """One nginx `location` of one server, as ingress-nginx renders it.

    `host`, `path`, `path_type`, `ingress` and the backend are what the Ingress says; `modifier`
    and `location_path` are the location nginx gets (a Prefix path yields two routes, `/foo/` and
    `= /foo`). A server's root location has `default_backend` set: it proxies to an Ingress's
    spec.defaultBackend, or (`ingress` None) to the controller's own 404.
    """

    host: str                       # the rule's host; "" for the catch-all server `_`
    path: str                       # the Ingress path as written ("/" for a root location)
    path_type: str                  # as written: Exact, Prefix or ImplementationSpecific
    ingress: str | None             # "ns/name"; None for the controller's default backend
    namespace: str | None           # of the Ingress, and so of the backend Service
    service: str | None
    port: int | str | None          # service port number or name, as written
    rewrite_target: str | None      # nginx.ingress.kubernetes.io/rewrite-target of the Ingress
    use_regex: bool                 # nginx.ingress.kubernetes.io/use-regex of the Ingress
    tls: bool                       # the server has a certificate (HTTPS, http→https redirect)
    modifier: str                   # nginx location modifier: "=", "" (prefix) or "~*"
    location_path: str              # the path in the location after ingress-nginx's changes
    default_backend: bool = False   # the server's root location (no rule matched)
    rewrite: bool = False           # nginx rewrites the URI here (`rewrite "(?i)path" target break`)
    app_root: str | None = None
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    preserve_trailing_slash: bool = False  # else the HTTPS redirect drops a trailing `/`
    problem: str | None = None      # why nginx cannot load this location (a bad regex): left out
    allowed_sources: tuple[str, ...] = ()  # allowlist-source-range CIDRs; others get 403 (empty: all)
    denied: str | None = None       # an annotation ingress-nginx rejects: the location answers 503
    proxy_body_size: str = DEFAULT_PROXY_BODY_SIZE  # client_max_body_size; a larger body gets 413
    backend_protocol: str = "HTTP"  # how nginx talks to the endpoints (proxy_pass https://, grpc_pass)
    x_forwarded_prefix: str | None = None  # sent upstream as the X-Forwarded-Prefix header

    @property
    def body_size_limit(self) -> int:
        """proxy_body_size in bytes; 0: no limit."""
        return _size_bytes(self.proxy_body_size)

    @property
    def location(self) -> str:
        """The location as nginx.conf spells it: `= /foo`, `/foo/`, `~* "^/foo"`."""
        if self.modifier == "~*":
            return f'~* "^{self.location_path}"'
        if self.modifier == "=":
            return f"= {self.location_path}"
        return self.location_path

    @property
    def backend(self) -> str | None:
        return None if self.service is None else f"{self.service}:{self.port}"

    @property
    def server_name(self) -> str:
        return self.host or CATCH_ALL

    @property
    def upstream(self) -> str | None:
        """ingress-nginx's name for the backend's upstream; None for the controller's 404."""
        if self.service is None:
            return None
        return upstream_name(self.namespace or "", self.service, self.port)


@dataclass(frozen=True)
class Server:
    """One nginx server block: its name, whether its locations are regexes, its certificate."""

    host: str                       # "" for the catch-all server
    regex: bool                     # every location is `~* "^path"` (use-regex/rewrite-target)
    tls: bool
    tls_secret: str | None          # "ns/name"; None: the controller's default certificate
    routes: tuple[Route, ...]
    # the server whose certificate certificate.lua finds for the hosts this server answers (its
    # own, or for an exact host its `*.parent`'s): plain HTTP to it is redirected (ssl-redirect)
    certificate: str | None = None

    @property
    def name(self) -> str:
        return self.host or CATCH_ALL

    @property
    def app_root(self) -> str | None:
        """The app-root nginx checks before any location: the first location's that has one."""
        return next((route.app_root for route in self.routes if route.app_root), None)


def upstream_name(namespace: str, service: str, port: int | str | None) -> str:
    """controller.go upstreamName: `<namespace>-<service>-<port as the Ingress names it>`."""
    return f"{namespace}-{service}-{port}"


@dataclass(frozen=True)
class Upstream:
    """The endpoints nginx balances over for one Ingress backend (Service and port).

    `endpoints` are the pod addresses "ip:port" new connections go to (ingress-nginx proxies to
    the pods, not to the ClusterIP); empty when the Service, its port or every endpoint that
    takes new connections is missing, and then nginx answers 503.
    """

    name: str
    namespace: str
    service: str
    port: int | str | None
    endpoints: tuple[str, ...]


@dataclass(frozen=True)
class RouteResult:
    """Where one request goes, and why (`explanation`, one decision per line)."""

    url: str
    scheme: str
    request_host: str
    request_port: int
    request_path: str               # the path as sent (with the query string)
    matched: bool                   # an Ingress (rule or defaultBackend) serves the request
    status: int                     # 200 proxied; 301/302/308 redirect; 400; 403; 404; 503
    ingress: str | None             # "ns/name"
    host: str | None                # host of the server that answered ("" = catch-all)
    path: str | None                # the Ingress path that matched (None: a default backend)
    path_type: str | None
    backend: str | None             # "service:port" as the Ingress names it
    upstream_path: str | None       # URI the backend receives (after rewrite), with the query
    explanation: tuple[str, ...]
    server: str = CATCH_ALL         # nginx server name: host, "*.foo.com" or "_"
    location: str | None = None     # nginx location that handled it
    served_by: str = "controller"   # "backend", "default-backend" (an Ingress's), "controller"
    redirect: str | None = None     # Location header of a 301/302/308
    route_entry: Route | None = None
    service: KubeObject | None = field(default=None, compare=False, repr=False)
    service_port: dict[str, Any] | None = field(default=None, compare=False)
    endpoints: tuple[str, ...] = ()  # "ip:port" nginx balances over (pods, not the ClusterIP)

    @property
    def pathType(self) -> str | None:  # noqa: N802 — the JSON/Kubernetes spelling
        return self.path_type

    def to_json(self) -> dict[str, Any]:
        return {"ingress": self.ingress, "host": self.host, "path": self.path, "pathType": self.path_type,
                "backend": self.backend, "upstream_path": self.upstream_path}


class BadRequest(ValueError):
    """nginx answers 400: the URI cannot be normalised (bad %-escape, `..` above the root)."""


# ================================================================ class selection

@dataclass(frozen=True)
class ClassDecision:
    ours: bool
    reason: str


def ingress_class_of(ingress: KubeObject, classes: Sequence[KubeObject], controller: str = CONTROLLER,
                     class_name: str = CLASS_NAME, watch_ingress_without_class: bool = False) -> ClassDecision:
    """Does a controller serve this Ingress? ingress-nginx's `GetIngressClass`, after the API server.

    - `spec.ingressClassName` wins: it must name an IngressClass whose spec.controller is ours
      (the controller only lists those IngressClasses).
    - else the deprecated `kubernetes.io/ingress.class` annotation must equal --ingress-class
      ("nginx").
    - else the DefaultIngressClass admission plugin has set ingressClassName on creation to the
      default IngressClass (annotation is-default-class "true"; several: the newest, then the
      lowest name), so that class decides; it does nothing when the annotation is present.
    - else only with --watch-ingress-without-class (default false).
    """
    ours_by_name = {c.name: c for c in classes if (c.spec.get("controller") or "") == controller}
    class_ref = ingress.spec.get("ingressClassName")
    if class_ref is not None:
        if class_ref in ours_by_name:
            return ClassDecision(True, f"ingressClassName {class_ref!r}: IngressClass with controller {controller}")
        other = next((c for c in classes if c.name == class_ref), None)
        if other is None:
            return ClassDecision(False, f"ingressClassName {class_ref!r}: no such IngressClass")
        return ClassDecision(False, f"ingressClassName {class_ref!r} belongs to controller "
                                    f"{other.spec.get('controller')!r}, not {controller}")
    annotation = ingress.annotations.get(INGRESS_CLASS_ANNOTATION)
    if annotation is not None:
        if annotation == class_name:
            return ClassDecision(True, f"annotation {INGRESS_CLASS_ANNOTATION}={annotation!r}")
        return ClassDecision(False, f"annotation {INGRESS_CLASS_ANNOTATION}={annotation!r}, this controller "
                                    f"serves {class_name!r}")
    default = default_ingress_class(classes)
    if default is not None:
        owner = default.spec.get("controller")
        if default.name in ours_by_name:
            return ClassDecision(True, f"no class: the default IngressClass {default.name!r} is set by the "
                                       f"API server (DefaultIngressClass admission)")
        return ClassDecision(False, f"no class: the default IngressClass {default.name!r} belongs to {owner!r}")
    if watch_ingress_without_class:
        return ClassDecision(True, "no class, and --watch-ingress-without-class is set")
    return ClassDecision(False, "no ingressClassName, no class annotation and no default IngressClass "
                                "(ingress-nginx --watch-ingress-without-class defaults to false)")


def default_ingress_class(classes: Sequence[KubeObject]) -> KubeObject | None:
    """The DefaultIngressClass admission plugin's choice: newest creationTimestamp, then name."""
    defaults = [c for c in classes if c.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"]
    if not defaults:
        return None
    defaults.sort(key=lambda c: c.name)
    defaults.sort(key=_created, reverse=True)
    return defaults[0]


def ingress_order(ingresses: Sequence[KubeObject]) -> list[KubeObject]:
    """ingress-nginx's `sortIngressSlice`: oldest first; equal timestamps by "ns/name" descending."""
    ordered = sorted(ingresses, key=lambda i: (i.namespace, i.name), reverse=True)
    ordered.sort(key=_created)
    return ordered


def _precedence(first: KubeObject | None, second: KubeObject) -> str:
    """Why `first` comes before `second` in `_sorted_ingresses`, in words for a conflict warning."""
    if first is None or _created(first) != _created(second):
        return "the oldest Ingress wins"
    when = "neither has a creationTimestamp (manifests offline)" if _created(second) == _ZERO_TIME else \
        "both were created in the same second"
    return (f"{when}, so ingress-nginx takes \"namespace/name\" in descending order; on a cluster where they "
            f"were created apart, the older one wins")


def _created(obj: KubeObject) -> datetime:
    value = obj.body.get("metadata", {}).get("creationTimestamp")
    if not isinstance(value, str) or not value:
        return _ZERO_TIME
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return _ZERO_TIME
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# ================================================================ annotations

@dataclass(frozen=True)
class _Annotations:
    rewrite_target: str | None = None
    use_regex: bool = False
    app_root: str | None = None
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    preserve_trailing_slash: bool = False
    canary: bool = False
    allowed_sources: tuple[str, ...] = ()
    denied: str | None = None
    proxy_body_size: str = DEFAULT_PROXY_BODY_SIZE
    backend_protocol: str = "HTTP"
    x_forwarded_prefix: str | None = None


_DEFAULT_ANNOTATIONS = _Annotations()
_TRUE = ("1", "t", "T", "TRUE", "true", "True")      # Go strconv.ParseBool
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _bool(annotations: dict[str, str], key: str, default: bool) -> bool:
    value = annotations.get(key)
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default  # unset or not a Go bool: ingress-nginx keeps the default


def unmodelled_annotations(ingress: KubeObject) -> list[str]:
    """ingress-nginx annotations of the Ingress that podnet neither simulates nor renders, without
    their prefix (`auth-type`, `limit-rps` …)."""
    return sorted(key[len(ANNOTATION_PREFIX):] for key in ingress.annotations
                  if key.startswith(ANNOTATION_PREFIX) and key not in MODELLED_ANNOTATIONS
                  and not key.startswith(CANARY + "-"))


def unmodelled_warning(ingress: KubeObject) -> str | None:
    """What a user must know of the annotations podnet leaves out: the Ingress is served without
    them, in `trace` and by the cluster's nginx alike."""
    names = unmodelled_annotations(ingress)
    if not names:
        return None
    lost = sorted({what for name in names for prefix, what in _PROTECTIONS if name.startswith(prefix)})
    text = (f"Ingress {ingress.ref}: annotation(s) {', '.join(names)} are not modelled by podnet: neither trace "
            "nor the cluster's nginx applies them")
    return text + (f"; it is served WITHOUT {' or '.join(lost)}" if lost else "")


def _annotations_of(ingress: KubeObject, warnings: list[str] | None = None) -> _Annotations:
    """The annotations podnet models. A value ingress-nginx's validation rejects: for the source
    range the location is denied (503, as the template writes `return 503` for it), for the
    body size and the protocol the default is kept; either way a warning says so, as it does for
    the annotations podnet does not model (unmodelled_warning)."""
    a = ingress.annotations
    warn = warnings.append if warnings is not None else (lambda _line: None)
    if (unmodelled := unmodelled_warning(ingress)) is not None:
        warn(unmodelled)
    ranges_value = a.get(ALLOWLIST_SOURCE_RANGE, a.get(WHITELIST_SOURCE_RANGE))
    allowed, denied = _source_ranges(ranges_value)
    if denied:
        warn(f"Ingress {ingress.ref}: {denied}: its locations answer 503")
    body_size = a.get(PROXY_BODY_SIZE, DEFAULT_PROXY_BODY_SIZE).strip()
    if not _SIZE.match(body_size):
        warn(f"Ingress {ingress.ref}: {PROXY_BODY_SIZE} {body_size!r} is not an nginx size (digits, then k, m "
             f"or g): the default {DEFAULT_PROXY_BODY_SIZE} applies")
        body_size = DEFAULT_PROXY_BODY_SIZE
    protocol = a.get(BACKEND_PROTOCOL, "HTTP").strip().upper()
    if protocol not in BACKEND_PROTOCOLS:
        warn(f"Ingress {ingress.ref}: {BACKEND_PROTOCOL} {protocol!r} is not modelled (podnet knows "
             f"{', '.join(BACKEND_PROTOCOLS)}): HTTP is used")
        protocol = "HTTP"
    return _Annotations(
        allowed_sources=allowed, denied=denied, proxy_body_size=body_size, backend_protocol=protocol,
        x_forwarded_prefix=a.get(X_FORWARDED_PREFIX) or None,
        rewrite_target=a.get(REWRITE_TARGET) or None,
        use_regex=_bool(a, USE_REGEX, False),
        app_root=a.get(APP_ROOT) or None,
        ssl_redirect=_bool(a, SSL_REDIRECT, True),
        force_ssl_redirect=_bool(a, FORCE_SSL_REDIRECT, False),
        preserve_trailing_slash=_bool(a, PRESERVE_TRAILING_SLASH, False),
        canary=_bool(a, CANARY, False),
    )


_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")  # what client_max_body_size (ngx_parse_offset) takes


def _size_bytes(size: str) -> int:
    unit = size[-1].lower() if size and size[-1].isalpha() else ""
    return int(size.rstrip("kKmMgG") or 0) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


def _source_ranges(value: str | None) -> tuple[tuple[str, ...], str | None]:
    """ipallowlist's ParseCIDRs: comma-separated CIDRs, a bare address is a /32 (/128)."""
    if not value or not value.strip():
        return (), None
    ranges: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item if "/" in item else item + ("/128" if ":" in item else "/32"),
                                           strict=False)
        except ValueError:
            return (), f"allowlist-source-range {item!r} is not an IP address or CIDR"
        ranges.append(str(network))
    return tuple(ranges), None


def source_allowed(allowed_sources: Sequence[str], client: str) -> bool:
    """nginx `allow CIDR; … deny all;`: the client address is in one of the ranges."""
    address = ipaddress.ip_address(client)
    return any(address in ipaddress.ip_network(cidr) for cidr in allowed_sources)


# ================================================================ building the nginx config

@dataclass
class _Location:
    """ingress.Location while the controller builds it (mutable, like the Go struct)."""

    path: str
    path_type: str                   # after SetDefaultNGINXPathType: Exact or Prefix
    written_path: str
    written_type: str
    ingress: KubeObject | None
    service: str | None
    port: int | str | None
    default_backend: bool            # the server's root location, on a default backend
    annotations: _Annotations = _DEFAULT_ANNOTATIONS
    replaceable: bool = False        # Go's IsDefBackend: an Ingress path "/" (Prefix) may take it over

    def needs_rewrite(self) -> bool:
        target = self.annotations.rewrite_target
        return bool(target) and target != self.path


@dataclass
class _ServerBuild:
    host: str
    locations: list[_Location]
    tls_ingress: KubeObject | None = None
    tls_secret: str | None = None
    tls: bool = False


@dataclass(frozen=True)
class _Compiled:
    route: Route
    pattern: re.Pattern[str] | None  # regex servers only
    error: str | None = None


class IngressController:
    """One ingress-nginx installation over a computed cluster.

    `IngressController(cluster)` is the stock controller (controller k8s.io/ingress-nginx,
    --ingress-class=nginx, --watch-ingress-without-class=false).
    """

    def __init__(self, cluster: Cluster, controller: str = CONTROLLER, class_name: str = CLASS_NAME,
                 watch_ingress_without_class: bool = False) -> None:
        self.cluster = cluster
        self.controller = controller
        self.class_name = class_name
        classes = cluster.of_kind("IngressClass")
        mine: list[KubeObject] = []
        self._ignored_objects: list[KubeObject] = []
        self.ignored: dict[str, str] = {}       # "ns/name" → why this controller does not serve it
        self.class_reasons: dict[str, str] = {}  # "ns/name" → why it does
        for ingress in cluster.of_kind("Ingress"):
            decision = ingress_class_of(ingress, classes, controller, class_name, watch_ingress_without_class)
            if decision.ours:
                mine.append(ingress)
                self.class_reasons[ingress.ref] = decision.reason
            else:
                self.ignored[ingress.ref] = decision.reason
                self._ignored_objects.append(ingress)
        self.ingresses: list[KubeObject] = ingress_order(mine)  # ingress-nginx's order: first wins
        self.warnings: list[str] = []
        self.unmodelled: dict[str, str] = {}  # "ns/name" → unmodelled_warning, for the route's explanation
        self._servers: dict[str, tuple[Server, list[_Compiled]]] = {}
        self._build()

    # ------------------------------------------------------------ public

    def servers(self) -> list[Server]:
        """Servers as ingress-nginx sorts them (by name), each with its locations in nginx order."""
        return [self._servers[name][0] for name in sorted(self._servers)]

    def routes(self) -> list[Route]:
        return [route for server in self.servers() for route in server.routes]

    def route(self, url: str, client: str | None = None, body_size: int = 0) -> RouteResult:
        """Where a request for `url` goes. `client`: the address nginx sees it from (for
        allowlist-source-range; None: unknown, assumed allowed); `body_size`: its Content-Length."""
        return _Request(self, url, client, body_size).run()

    def upstreams(self) -> list[Upstream]:
        """One upstream per backend the locations name, by name, with its ready endpoints now."""
        found: dict[str, Upstream] = {}
        for route in self.routes():
            name = route.upstream
            if name is None or name in found:
                continue
            service = self.cluster.get("Service", route.namespace or "", route.service or "")
            endpoints = _upstream(self.cluster, service, route.port)[1] if service is not None else []
            found[name] = Upstream(name, route.namespace or "", route.service or "", route.port, tuple(endpoints))
        return [found[name] for name in sorted(found)]

    # ------------------------------------------------------------ build (createServers & co.)

    def _build(self) -> None:
        servers: dict[str, _ServerBuild] = {
            CATCH_ALL: _ServerBuild(CATCH_ALL, [_Location(ROOT, PREFIX, ROOT, PREFIX, None, None, None, True,
                                                          replaceable=True)])}
        annotations = {i.ref: _annotations_of(i, self.warnings) for i in self.ingresses}
        self.unmodelled = {i.ref: text for i in self.ingresses if (text := unmodelled_warning(i)) is not None}

        # createServers: one server per host, each with a root location on a default backend.
        for ingress in self.ingresses:
            anns = annotations[ingress.ref]
            if anns.canary:
                self.warnings.append(f"Ingress {ingress.ref} is a canary: it adds no locations "
                                     f"(its traffic split is not simulated)")
                continue
            default = _service_backend(ingress.spec.get("defaultBackend"))
            rules = ingress.spec.get("rules") or []
            if default is not None:
                catch_all_root = servers[CATCH_ALL].locations[0]
                if catch_all_root.replaceable and not rules:
                    # an Ingress with a backend and no rule configures the catch-all server, once;
                    # its rewrite/redirect annotations are deliberately not applied there
                    catch_all_root.ingress = ingress
                    catch_all_root.service, catch_all_root.port = default
                    catch_all_root.replaceable = False
            for rule in rules:
                host = rule.get("host") or CATCH_ALL
                if host in servers:
                    continue
                # the root takes this Ingress's annotations (as locationApplyAnnotations does) and,
                # if it has one, its defaultBackend
                service, port = default if default is not None else (None, None)
                owner = ingress if default is not None else None
                servers[host] = _ServerBuild(host, [_Location(ROOT, PREFIX, ROOT, PREFIX, owner, service, port,
                                                              True, anns, replaceable=True)])

        # certificates: the first Ingress with a rule for the host and a non-empty spec.tls
        for ingress in self.ingresses:
            if annotations[ingress.ref].canary:
                continue
            tls = ingress.spec.get("tls") or []
            for rule in ingress.spec.get("rules") or []:
                server = servers[rule.get("host") or CATCH_ALL]
                if server.host == CATCH_ALL or server.tls or not tls:
                    continue
                server.tls, server.tls_ingress = True, ingress
                secret = _tls_secret_for(server.host, tls)
                server.tls_secret = f"{ingress.namespace}/{secret}" if secret else None

        # getBackendServers: the paths
        for ingress in self.ingresses:
            anns = annotations[ingress.ref]
            for rule in ingress.spec.get("rules") or []:
                server = servers.get(rule.get("host") or CATCH_ALL) or servers[CATCH_ALL]
                for http_path in (rule.get("http") or {}).get("paths") or []:
                    backend = _service_backend(http_path.get("backend"))
                    if backend is None or anns.canary:
                        continue
                    self._add_path(server, ingress, anns, http_path, backend)

        for name, server in servers.items():
            # sort.SliceStable by path descending, then by path length descending
            server.locations.sort(key=lambda loc: loc.path, reverse=True)
            server.locations.sort(key=lambda loc: len(loc.path), reverse=True)
            locations = _update_server_locations(server.locations)
            self._servers[name] = self._freeze(server, locations)
        for name, (frozen, compiled) in list(self._servers.items()):
            self._servers[name] = (replace(frozen, certificate=self._certificate_of(frozen)), compiled)

    def _certificate_of(self, server: Server) -> str | None:
        """certificate.lua: a certificate for the Host, or for `*.` + its parent domain. The Host
        always selects this server (an exact name, or a wildcard's one label); `_` has none."""
        if not server.host:
            return None
        names = [server.host]
        if not server.host.startswith("*.") and "." in server.host:
            names.append("*." + server.host.split(".", 1)[1])
        return next((n for n in names if n in self._servers and self._servers[n][0].tls), None)

    def _add_path(self, server: _ServerBuild, ingress: KubeObject, anns: _Annotations,
                  http_path: dict[str, Any], backend: tuple[str, int | str | None]) -> None:
        written_path = http_path.get("path") or ""
        path = written_path or ROOT
        written_type = http_path.get("pathType") or IMPLEMENTATION_SPECIFIC
        path_type = EXACT if written_type == EXACT else PREFIX  # SetDefaultNGINXPathType
        if written_type != IMPLEMENTATION_SPECIFIC and not _STRICT_PATH.match(path):
            self.warnings.append(
                f"Ingress {ingress.ref}: {written_type} path {path!r} has characters other than letters, digits, "
                f"'/', '_', '-' and '.': ingress-nginx >= 1.12 (strict-validate-path-type) rejects it at admission; "
                f"regex paths need pathType ImplementationSpecific")
        for loc in server.locations:
            if loc.path != path:
                continue
            if loc.path_type != path_type:
                break  # same path, another type: allowed, a location of its own
            if not loc.replaceable:
                holder = loc.ingress.ref if loc.ingress else "?"
                held = f"the spec.defaultBackend of Ingress {holder} holds it" if loc.default_backend else \
                    f"Ingress {holder} already defines it ({_precedence(loc.ingress, ingress)})"
                self.warnings.append(f"server {server.host}: {path_type} {path} of Ingress {ingress.ref} is "
                                     f"ignored, {held}")
                return
            loc.service, loc.port = backend
            loc.default_backend = loc.replaceable = False
            loc.ingress = ingress
            loc.annotations = anns
            loc.written_path, loc.written_type = written_path or ROOT, written_type
            return
        server.locations.append(_Location(path, path_type, written_path or ROOT, written_type, ingress,
                                          backend[0], backend[1], False, anns))

    def _freeze(self, server: _ServerBuild, locations: list[_Location]) -> tuple[Server, list[_Compiled]]:
        host = "" if server.host == CATCH_ALL else server.host
        regex = any(loc.needs_rewrite() or loc.annotations.use_regex for loc in locations)
        compiled: list[_Compiled] = []
        seen: dict[tuple[str, str], _Location] = {}
        for loc in locations:
            modifier = "~*" if regex else ("=" if loc.path_type == EXACT else "")
            anns = loc.annotations
            route = Route(
                host=host, path=loc.written_path, path_type=loc.written_type,
                ingress=loc.ingress.ref if loc.ingress else None,
                namespace=loc.ingress.namespace if loc.ingress else None,
                service=loc.service, port=loc.port,
                rewrite_target=anns.rewrite_target, use_regex=anns.use_regex, tls=server.tls,
                modifier=modifier, location_path=loc.path, default_backend=loc.default_backend,
                rewrite=loc.needs_rewrite(), app_root=anns.app_root,
                ssl_redirect=anns.ssl_redirect, force_ssl_redirect=anns.force_ssl_redirect,
                preserve_trailing_slash=anns.preserve_trailing_slash,
                allowed_sources=anns.allowed_sources, denied=anns.denied, proxy_body_size=anns.proxy_body_size,
                backend_protocol=anns.backend_protocol, x_forwarded_prefix=anns.x_forwarded_prefix)
            pattern, error = None, None
            if regex:
                try:
                    pattern = re.compile("^" + _pcre_to_python(loc.path), re.IGNORECASE)
                except re.error as exc:
                    error = f"invalid regular expression {loc.path!r}: {exc}"
                    self.warnings.append(f"server {server.host}: location {route.location}: {error}; nginx "
                                         f"would refuse this configuration")
                    route = replace(route, problem=error)
            else:
                key = (modifier, loc.path)
                if key in seen:
                    self.warnings.append(
                        f"server {server.host}: duplicate location {route.location} (from Ingress "
                        f"{route.ingress} and {seen[key].ingress.ref if seen[key].ingress else '-'}): nginx -t "
                        f"rejects such a configuration; podnet uses the first")
                    continue
                seen[key] = loc
            compiled.append(_Compiled(route, pattern, error))
        frozen = Server(host=host, regex=regex, tls=server.tls, tls_secret=server.tls_secret,
                        routes=tuple(c.route for c in compiled))
        return frozen, compiled


def _update_server_locations(locations: list[_Location]) -> list[_Location]:
    """location.go `updateServerLocations`: Prefix /foo → `/foo/` plus `= /foo`."""
    exact_paths = {loc.path for loc in locations if loc.path_type == EXACT}
    updated: list[_Location] = []
    for loc in locations:
        if loc.path == ROOT or loc.path_type != PREFIX or loc.needs_rewrite() or loc.annotations.use_regex:
            updated.append(loc)
            continue
        if loc.path in exact_paths:
            loc.path = _normalize_prefix(loc.path)
            updated.append(loc)
            continue
        exact = copy.copy(loc)
        exact.path_type = EXACT
        loc.path = _normalize_prefix(loc.path)
        updated += [loc, exact]
    return updated


_STRICT_PATH = re.compile(r"^/[A-Za-z0-9/_.-]*$")  # inspector.ValidatePathType


def _normalize_prefix(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def _service_backend(backend: Any) -> tuple[str, int | str | None] | None:
    service = (backend or {}).get("service") if isinstance(backend, dict) else None
    if not service:
        return None  # a resource backend: ingress-nginx skips it
    port = service.get("port") or {}
    return service.get("name"), (port.get("name") or port.get("number"))


def _tls_secret_for(host: str, tls: list[dict[str, Any]]) -> str | None:
    """extractTLSSecretName: the secret of the tls entry that lists the host (else the default cert)."""
    for entry in tls:
        if any(str(h).lower() == host for h in entry.get("hosts") or []):
            return entry.get("secretName") or None
    return None


def _pcre_to_python(pattern: str) -> str:
    """PCRE/RE2 → Python re for the constructs Ingress paths use: named groups."""
    return re.sub(r"\(\?<(?![=!])", "(?P<", pattern)


def _wildcard_server_regex(name: str) -> re.Pattern[str]:
    """template.go buildServerName: `*.foo.com` → `~^(?<subdomain>[\\w-]+)\\.foo\\.com$`."""
    return re.compile(r"^[A-Za-z0-9_-]+\." + re.escape(name[2:]) + "$")


# ================================================================ one request

def normalize_uri(path: str) -> str:
    """The URI nginx matches locations against: %-decoded, slashes merged, `.`/`..` resolved."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", path):
        raise BadRequest(f"invalid %-escape in {path!r}")
    decoded = unquote(path, errors="surrogateescape")
    if not decoded.startswith("/"):
        decoded = "/" + decoded
    decoded = re.sub(r"/{2,}", "/", decoded)  # merge_slashes on
    parts = decoded.split("/")[1:]
    stack: list[str] = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == ".":
            if last:
                stack.append("")
        elif part == "..":
            if not stack:
                raise BadRequest(f"{path!r} climbs above the root")
            stack.pop()
            if last:
                stack.append("")
        else:
            stack.append(part)
    return "/" + "/".join(stack)


def nginx_rewrite(path_regex: str, target: str, uri: str, query: str = "") -> str | None:
    """`rewrite "(?i)<path_regex>" <target> break;` applied to a normalised URI; None: no match.

    The whole URI is replaced; $1..$9 (and named groups) are the regex's captures, a group that
    did not take part is empty; the query string is kept (unless the target ends in `?`).
    """
    match = re.compile(_pcre_to_python(path_regex), re.IGNORECASE).search(uri)
    if match is None:
        return None
    named = match.groupdict()

    def capture(m: re.Match[str]) -> str:
        number = m.group(1) or m.group(2)
        if number:
            index = int(number)
            return (match.group(index) or "") if index <= (match.re.groups or 0) else ""
        name = m.group(3) or m.group(4)
        return (named.get(name) or "") if name in named else m.group(0)

    out = re.sub(r"\$(?:\{(\d)\}|(\d)|\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))", capture, target)
    if "?" in out:
        if out.endswith("?"):
            return out[:-1]
        return out + ("&" + query if query else "")
    return out + ("?" + query if query else "")


def _canonical_host(host: str) -> str:
    host = (host or "").strip().lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host[:-1] if host.endswith(".") else host


class _Request:
    def __init__(self, controller: IngressController, url: str, client: str | None = None,
                 body_size: int = 0) -> None:
        self.controller = controller
        self.url = url
        self.client = client
        self.body_size = body_size
        self.why: list[str] = []
        raw = url if "://" in url else "http://" + url.lstrip("/")
        parts = urlsplit(raw)
        self.scheme = parts.scheme.lower()
        if self.scheme not in ("http", "https"):
            raise ValueError(f"{url}: only http:// and https:// URLs go through an Ingress")
        self.host = _canonical_host(parts.hostname or "")
        try:
            self.port = parts.port or (443 if self.scheme == "https" else 80)
        except ValueError as exc:
            raise ValueError(f"{url}: {exc}") from None
        self.raw_path = parts.path or "/"
        self.query = parts.query
        self.request_uri = self.raw_path + ("?" + self.query if self.query else "")

    def result(self, status: int, **fields: Any) -> RouteResult:
        if status != 200:
            fields["served_by"] = "controller"  # nginx itself answers: redirect, 4xx, 503
        return RouteResult(url=self.url, scheme=self.scheme, request_host=self.host, request_port=self.port,
                           request_path=self.request_uri, status=status,
                           explanation=tuple(self.why), **{"matched": False, "ingress": None, "host": None,
                                                            "path": None, "path_type": None, "backend": None,
                                                            "upstream_path": None, **fields})

    def run(self) -> RouteResult:
        self.why.append(f"{self.scheme.upper()} request for host {self.host or '(none)'} path {self.request_uri} "
                        f"(port {self.port}; nginx matches the Host without its port)")
        server, compiled = self._server()
        try:
            uri = normalize_uri(self.raw_path)
        except BadRequest as exc:
            self.why.append(f"nginx answers 400 Bad Request: {exc}")
            return self.result(400, server=server.name, host=server.host)
        if uri != self.raw_path:
            self.why.append(f"nginx matches the normalised URI {uri} (decoded, slashes merged, dot segments "
                            f"resolved)")

        app_root = server.app_root
        if app_root and uri == "/":
            location = app_root if "://" in app_root else f"{self.scheme}://{self.host}{app_root}"
            self.why.append(f"app-root {app_root}: a request for / is redirected (302) before any location")
            return self.result(302, server=server.name, host=server.host, redirect=location)

        found = self._regex_location(server, compiled, uri) if server.regex else \
            self._static_location(server, compiled, uri)
        if isinstance(found, RouteResult):
            return found
        too_large = self._too_large(server, found.route.proxy_body_size, found.route.location, found.route)
        return too_large or self._serve(server, found.route, found, uri)

    def _too_large(self, server: Server, size: str, location: str, route: Route | None) -> RouteResult | None:
        """client_max_body_size, checked as soon as nginx has found the location: before its
        rewrites and redirects, and before the 301 auto-redirect (with that location's limit)."""
        limit = _size_bytes(size)
        if not limit or self.body_size <= limit:
            return None
        self.why.append(f"the body ({self.body_size} bytes) is larger than the location's proxy-body-size "
                        f"{size}: nginx answers 413")
        return self.result(413, server=server.name, host=server.host, location=location, route_entry=route)

    # -------------------------------------------------------- server_name

    def _server(self) -> tuple[Server, list[_Compiled]]:
        for other in self.controller._ignored_objects:
            hosts = [r.get("host") or "" for r in other.spec.get("rules") or []]
            if any(h and host_matches(h, self.host) for h in hosts):
                self.why.append(f"Ingress {other.ref} names this host but is not served by this controller: "
                                f"{self.controller.ignored[other.ref]}")
        servers = self.controller._servers
        if self.host and self.host in servers and self.host != CATCH_ALL:
            self.why.append(f"server {self.host}: exact server_name (an Ingress rule names this host)")
            return servers[self.host]
        for name in sorted(servers):
            if name.startswith("*.") and _wildcard_server_regex(name).match(self.host):
                self.why.append(f"server {name}: wildcard host matches {self.host} (one label; no exact "
                                f"server for it)")
                return servers[name]
        wildcards = [n for n in sorted(servers) if n.startswith("*.")]
        note = f"; wildcards {', '.join(wildcards)} cover exactly one extra label" if wildcards else ""
        self.why.append(f"server _: no Ingress rule names host {self.host or '(none)'}{note}; the catch-all "
                        f"server takes it (rules without a host, or the default backend)")
        return servers[CATCH_ALL]

    # -------------------------------------------------------- location

    def _regex_location(self, server: Server, compiled: list[_Compiled], uri: str) -> _Compiled | RouteResult:
        reasons = sorted({entry.route.ingress for entry in compiled
                          if (entry.route.rewrite or entry.route.use_regex) and entry.route.ingress})
        self.why.append(f"server {server.name} uses regex locations (use-regex/rewrite-target on "
                        f"{', '.join(reasons) or 'a location'}): every path is ~* \"^path\", case-insensitive, "
                        f"anchored at the start only; nginx takes the first match, longest path string first")
        for entry in compiled:
            if entry.pattern is None:
                self.why.append(f"skipped {entry.route.location} ({entry.error})")
                continue
            if entry.pattern.match(uri):
                self.why.append(f"tried {entry.route.location} ({self._describe(entry.route)}): matches — the "
                                f"first regex in order wins")
                return entry
            self.why.append(f"tried {entry.route.location} ({self._describe(entry.route)}): no match")
        self.why.append("no location matches")  # unreachable: `^/` always matches
        return self.result(404, server=server.name, host=server.host)

    def _static_location(self, server: Server, compiled: list[_Compiled], uri: str) -> _Compiled | RouteResult:
        """nginx without regex locations: `= uri`, else a prefix named `uri`, else the 301
        auto-redirect to `uri/` when a location is named that, else the longest prefix."""
        self.why.append(f"server {server.name} uses plain locations: exact (=) first, then the longest prefix")
        for entry in compiled:
            if entry.route.modifier == "=" and entry.route.location_path == uri:
                self.why.append(f"location {entry.route.location} ({self._describe(entry.route)}): exact match, "
                                f"taken before any prefix")
                return entry
        builtins = _CATCH_ALL_BUILTINS if server.host == "" else ()
        prefixes: list[tuple[str, _Compiled | _Builtin]] = [
            (entry.route.location_path, entry) for entry in compiled if entry.route.modifier == ""]
        prefixes += list(builtins)
        if not any(path == uri for path, _ in prefixes):
            slash = next((entry for entry in compiled if entry.route.location_path == uri + "/"), None)
            if slash is not None:
                return self._auto_redirect(server, slash.route, uri)
        matching = sorted(((path, entry) for path, entry in prefixes if uri.startswith(path)),
                          key=lambda item: -len(item[0]))
        for path, entry in matching[1:]:
            label = entry.route.location if isinstance(entry, _Compiled) else path
            self.why.append(f"location {label} matches too, but a longer prefix wins")
        others = [entry.route.location for entry in compiled
                  if all(entry is not m for _, m in matching)]
        if others:
            self.why.append(f"not matching: {', '.join(others)}")
        best_path, best = matching[0]  # the root location `/` matches every URI
        if isinstance(best, _Builtin):
            self.why.append(f"location {best_path}: the controller's own location in server _ ({best.what}); "
                            f"longest prefix")
            too_large = self._too_large(server, DEFAULT_PROXY_BODY_SIZE, best_path, None)
            return too_large or self.result(best.status, server=server.name, host=server.host, location=best_path)
        self.why.append(f"location {best.route.location} ({self._describe(best.route)}): longest matching "
                        f"prefix")
        return best

    def _auto_redirect(self, server: Server, route: Route, uri: str) -> RouteResult:
        too_large = self._too_large(server, route.proxy_body_size, route.location, route)
        if too_large is not None:
            return too_large
        target = uri + "/" + ("?" + self.query if self.query else "")
        self.why.append(f"location {route.location} ends in '/' and the request is that name without it: nginx "
                        f"answers 301 to {uri}/ (auto-redirect of proxy_pass locations); the client then "
                        f"reaches {self._describe(route)}")
        by_rule = not route.default_backend
        return self.result(301, server=server.name, host=server.host, redirect=f"{self.scheme}://{self.host}{target}",
                           matched=by_rule and route.service is not None, location=route.location,
                           route_entry=route, ingress=route.ingress, backend=route.backend,
                           path=route.path if by_rule else None, path_type=route.path_type if by_rule else None,
                           upstream_path=target)

    def _describe(self, route: Route | None) -> str:
        if route is None:
            return "-"
        if route.default_backend:
            return (f"root default: Ingress {route.ingress} defaultBackend {route.backend}" if route.service
                    else "root default: the controller's 404 backend")
        path_type = "ImplementationSpecific (= Prefix)" if route.path_type == IMPLEMENTATION_SPECIFIC \
            else route.path_type
        return f"{path_type} {route.path} of {route.ingress} → {route.backend}"

    # -------------------------------------------------------- the location's handling

    def _serve(self, server: Server, route: Route, entry: _Compiled, uri: str) -> RouteResult:
        common: dict[str, Any] = dict(server=server.name, host=server.host, location=route.location,
                                      route_entry=route)
        if route.service is None:
            self.why.append("no Ingress rule matches: the controller's default backend answers 404")
            if not server.host:
                # the API docs call spec.defaultBackend the backend for requests no rule matches;
                # ingress-nginx gives it only that Ingress's own hosts when the Ingress has rules
                for ingress in self.controller.ingresses:
                    backend = _service_backend(ingress.spec.get("defaultBackend"))
                    if backend is not None and ingress.spec.get("rules"):
                        hosts = sorted({r.get("host") for r in ingress.spec["rules"] if r.get("host")})
                        where = f"only for its own hosts ({', '.join(hosts)})" if hosts else \
                            "nowhere (its rules name no host)"
                        self.why.append(f"Ingress {ingress.ref} has spec.defaultBackend {backend[0]}:{backend[1]}, "
                                        f"but also rules: ingress-nginx uses it {where}, not for every unmatched "
                                        f"request as the Ingress API docs describe (kubernetes/ingress-nginx#8473)")
            return self.result(404, **common)
        if route.ingress in self.controller.class_reasons:
            self.why.append(f"Ingress {route.ingress} is served by this controller: "
                            f"{self.controller.class_reasons[route.ingress]}")
        unmodelled = self.controller.unmodelled.get(route.ingress or "")
        if unmodelled:
            self.why.append(f"warning: {unmodelled}")
        by_rule = not route.default_backend
        common.update(matched=True, ingress=route.ingress, backend=route.backend,
                      path=route.path if by_rule else None, path_type=route.path_type if by_rule else None,
                      served_by="backend" if by_rule else "default-backend")
        if not by_rule:
            self.why.append(f"no rule path matches: the server's default is the spec.defaultBackend of Ingress "
                            f"{route.ingress}")

        if route.denied:
            # the template's `return 503` for a location whose annotations were rejected
            self.why.append(f"the location is denied ({route.denied}): ingress-nginx answers 503")
            return self.result(503, **common)
        upstream = self.request_uri
        if route.rewrite:
            rewritten = nginx_rewrite(route.location_path, route.rewrite_target or "", uri, self.query)
            if rewritten is None:  # the location regex matched, so this cannot happen; be explicit anyway
                self.why.append(f"rewrite (?i){route.location_path} does not match {uri}; URI unchanged")
            elif rewritten.startswith(("http://", "https://")):
                self.why.append(f"rewrite-target {route.rewrite_target} is a URL: nginx redirects (302)")
                return self.result(302, redirect=rewritten, **common)
            else:
                self.why.append(f"rewrite \"(?i){route.location_path}\" {route.rewrite_target} break: the backend "
                                f"receives {rewritten} (the whole URI is replaced)")
                upstream = rewritten
        elif route.rewrite_target:
            self.why.append("rewrite-target equals the path: no rewrite; the path is passed on unchanged")
        else:
            self.why.append("no rewrite-target: the request URI is passed on unchanged")
        common["upstream_path"] = upstream

        certificate = server.certificate
        if self.scheme == "http" and (route.force_ssl_redirect or (route.ssl_redirect and certificate)):
            # lua_ingress.lua: the request URI as sent, a trailing `/` dropped (even a lone `/`)
            # unless preserve-trailing-slash
            uri = self.request_uri
            if uri.endswith("/") and not route.preserve_trailing_slash:
                uri = uri[:-1]
            target = f"https://{self.host}{uri}"
            why = "force-ssl-redirect" if route.force_ssl_redirect else \
                f"a certificate is configured for {certificate} (an Ingress for it has spec.tls)"
            self.why.append(f"{why}: HTTP is redirected ({HTTP_REDIRECT_CODE}) to {target} "
                            f"(ssl-redirect: \"false\" turns this off)")
            return self.result(HTTP_REDIRECT_CODE, redirect=target, **common)
        # ingress-nginx's balancer.rewrite (rewrite_by_lua): no endpoints → 503, before the access phase
        unavailable = self._unavailable(route, common)
        if unavailable is not None:
            return unavailable
        if route.allowed_sources:
            ranges = ", ".join(route.allowed_sources)
            if self.client is None:
                self.why.append(f"allowlist-source-range {ranges}: the client address is not known here, "
                                f"assumed allowed")
            elif not source_allowed(route.allowed_sources, self.client):
                self.why.append(f"allowlist-source-range {ranges} does not include the client {self.client}: 403")
                return self.result(403, **common)
            else:
                self.why.append(f"allowlist-source-range {ranges} includes the client {self.client}")
        if route.backend_protocol != "HTTP":
            self.why.append(f"backend-protocol {route.backend_protocol}: nginx speaks it to the endpoints")
        self.why.append(f"proxied to {common['service'].ref} port {common['service_port'].get('port')} → endpoints "
                        f"{', '.join(common['endpoints'])} (ingress-nginx balances over the endpoints itself)")
        return self.result(200, **common)

    def _unavailable(self, route: Route, common: dict[str, Any]) -> RouteResult | None:
        """The 503 of a backend without endpoints (no Service, no such port, none ready), or
        None with the Service, its port and the endpoints put in `common`."""
        namespace = route.namespace or ""
        service = self.controller.cluster.get("Service", namespace, route.service or "")
        if service is None:
            self.why.append(f"Service {namespace}/{route.service} does not exist: the upstream has no endpoints, "
                            f"ingress-nginx answers 503")
            return self.result(503, **common)
        port_spec, endpoints, note = _upstream(self.controller.cluster, service, route.port)
        common.update(service=service, service_port=port_spec, endpoints=tuple(endpoints))
        if port_spec is None:
            self.why.append(f"Service {service.ref} has no port {route.port!r} (by number, name or targetPort): "
                            f"no endpoints, 503")
            return self.result(503, **common)
        if note:
            self.why.append(note)
        if not endpoints:
            self.why.append(f"Service {service.ref} port {route.port} has no ready endpoint: 503")
            return self.result(503, **common)
        return None


@dataclass(frozen=True)
class _Builtin:
    status: int
    what: str


_CATCH_ALL_BUILTINS: tuple[tuple[str, _Builtin], ...] = (
    (HEALTHZ_PATH, _Builtin(200, "health check, return 200")),
    (NGINX_STATUS_PATH, _Builtin(403, "stub_status, allowed from 127.0.0.1 only: 403")),
)


def _upstream(cluster: Cluster, service: KubeObject, port: int | str | None
              ) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """The Service port an Ingress backend means and the endpoints nginx balances over.

    controller.go `serviceEndpoints`: the first Service port whose number, targetPort or name
    equals the Ingress's port (as a string); endpointslices.go `getEndpointsFromSlices`: ready
    endpoints of the Service's slices, at the slice port of the same name (else a numeric
    targetPort). ExternalName Services: one endpoint, the external name (`externalNamePorts`).
    """
    wanted = "" if port is None else str(port)
    ports = service.spec.get("ports") or []
    if service.spec.get("type") == "ExternalName":
        name = service.spec.get("externalName") or ""
        spec = _external_name_port(wanted, ports)
        if spec is None or name == "localhost" or name.startswith("127."):
            return spec, [], None
        target = spec.get("targetPort")
        return spec, [f"{name}:{target}"], f"Service {service.ref} is ExternalName {name}: proxied to it directly"
    for spec in ports:
        if wanted in (str(spec.get("port")), str(spec.get("targetPort")), spec.get("name") or "\0"):
            via = "targetPort" if wanted == str(spec.get("targetPort")) and wanted != str(spec.get("port")) \
                and wanted != spec.get("name") else None
            note = (f"Ingress port {wanted} matches Service port {spec.get('name') or spec.get('port')} by its "
                    f"targetPort (ingress-nginx accepts that)") if via else None
            return spec, _slice_endpoints(cluster, service, spec), note
    return None, [], None


def _external_name_port(wanted: str, ports: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not wanted.isdigit():
        for spec in ports:
            if spec.get("name") == wanted:
                target = spec.get("targetPort")
                return {**spec, "targetPort": target if isinstance(target, int) and target else spec.get("port")}
        return None
    number = int(wanted)
    for spec in ports:
        if spec.get("port") == number:
            target = spec.get("targetPort")
            return {**spec, "targetPort": target if isinstance(target, int) and target else number}
    return {"protocol": "TCP", "port": number, "targetPort": number}


def _slice_endpoints(cluster: Cluster, service: KubeObject, port: dict[str, Any]) -> list[str]:
    """The "ip:port" nginx balances over: the slice port of the Service port's name (else a
    numeric targetPort), at the ready endpoints. ingress-nginx's getEndpointsFromSlices skips
    every endpoint that is not ready (`if !(*ep.Conditions.Ready) { continue }`), terminating
    ones included: unlike kube-proxy (services.usable_endpoints) it has no fallback to the
    serving-terminating pods, so while only those are left a request through the Ingress gets
    503 and one through the Service still reaches them."""
    target = port.get("targetPort")
    numeric_target = target if isinstance(target, int) else None
    name = port.get("name") or ""
    seen: list[str] = []
    for endpoint_slice in cluster.of_kind("EndpointSlice", service.namespace):
        if endpoint_slice.labels.get(SERVICE_NAME_LABEL) != service.name:
            continue
        slice_ports = endpoint_slice.body.get("ports") or []
        numbers: list[int] = []
        if not slice_ports and numeric_target:
            numbers.append(numeric_target)
        for slice_port in slice_ports:
            if fields.protocol(slice_port) != "TCP":
                continue
            number = 0
            if not name or name == (slice_port.get("name") or ""):
                number = slice_port.get("port") or 0
            if not number and numeric_target:
                number = numeric_target
            if number:
                numbers.append(number)
        for endpoint in endpoint_slice.body.get("endpoints") or []:
            if not fields.endpoint_ready(endpoint):
                continue  # getEndpointsFromSlices: `if !(*ep.Conditions.Ready) { continue }`
            for number in numbers:
                for address in endpoint.get("addresses") or []:
                    hostport = f"[{address}]:{number}" if ":" in address else f"{address}:{number}"
                    if hostport not in seen:
                        seen.append(hostport)
    return seen
