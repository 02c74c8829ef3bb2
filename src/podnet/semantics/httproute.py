"""Gateway API HTTPRoutes: which rule takes a request, and where it sends it.

One copy of the rules, for the mesh (HTTPRoutes attached to a Service: GAMMA) and for any
gateway that comes later: the routes attached to a parent, their rules in Gateway API's order of
precedence, a request's match, the weighted backends, the timeouts; and, for the mesh, the
retry and timeout annotations Linkerd reads on a Service or a route. The proxies' configuration
(mesh/envoy.py) renders these rules in this order, and the simulator's `trace` picks the rule
with `choose`: the same answer.

Sources: gateway-api's apis/v1/httproute_types.go (matching, precedence, weights, timeouts),
GEP-1426 and GEP-1294 (GAMMA: a Service as parent; producer routes in the Service's namespace,
consumer routes in the client's), GEP-2257 (durations); linkerd.io/2/reference/retries and
timeouts (the annotations, a route's retry annotations replacing all of its Service's).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from podnet.api.objects import KubeObject
from podnet.config import parse_go_duration

RETRY_HTTP = "retry.linkerd.io/http"  # status codes to retry: "5xx", "500,502-504"
RETRY_LIMIT = "retry.linkerd.io/limit"  # retries per request (default 1)
RETRY_TIMEOUT = "retry.linkerd.io/timeout"  # each attempt's timeout
TIMEOUT_REQUEST = "timeout.linkerd.io/request"  # the whole request's, retries included
RETRY_ANNOTATIONS = (RETRY_HTTP, RETRY_LIMIT, RETRY_TIMEOUT)
GATEWAY_GROUP = "gateway.networking.k8s.io"
# what RE2 (Envoy's regex engine) does not have and Python's re does: refused, not silently different
_NOT_RE2 = re.compile(r"\(\?(?:[=!]|<[=!])|\\[1-9]|\(\?P=|\(\?\(")
PATH_PREFIX, PATH_EXACT, PATH_REGEX = "PathPrefix", "Exact", "RegularExpression"


class RouteError(ValueError):
    pass


@dataclass(frozen=True)
class Backend:
    service: str  # a Service of the route's namespace
    namespace: str
    port: int | None
    weight: int


@dataclass(frozen=True)
class Match:
    path_type: str = PATH_PREFIX
    path: str = "/"
    method: str | None = None
    headers: tuple[tuple[str, str, str], ...] = ()  # (type, name lower-cased, value)
    query: tuple[tuple[str, str, str], ...] = ()  # (type, name, value)

    def precedence(self) -> tuple:
        """Gateway API's order among matches (the lower, the earlier): an exact path first, then
        the longest prefix (or pattern), then a method, then the most header matches, then the
        most query parameter matches."""
        return (0 if self.path_type == PATH_EXACT else 1, -len(self.path), self.method is None,
                -len(self.headers), -len(self.query))


@dataclass(frozen=True)
class Retry:
    statuses: tuple[int, ...]
    limit: int = 1
    attempt_timeout: float | None = None


@dataclass(frozen=True)
class Rule:
    route: str  # NAMESPACE/NAME of its HTTPRoute
    index: int  # its place among the route's rules
    match: Match
    backends: tuple[Backend, ...]
    timeout: float | None = None  # seconds; None: none (Gateway API's default)
    backend_timeout: float | None = None
    retry: Retry | None = None
    problem: str = ""  # an annotation of its route or Service that could not be read (and is ignored)

    def describe(self) -> str:
        return f"HTTPRoute {self.route} rule {self.index}"


@dataclass(frozen=True)
class Request:
    method: str = "GET"
    path: str = "/"  # without the query
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    query: Mapping[str, str] = field(default_factory=dict)


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """A request line's target as (path, query parameters)."""
    path, _, query = target.partition("?")
    params = {}
    for item in query.split("&") if query else ():
        name, _, value = item.partition("=")
        params.setdefault(name, value)
    return path or "/", params


# -- which routes, which rules -----------------------------------------------------------------


def attaches(route: KubeObject, service: KubeObject, port: Mapping) -> bool:
    """Whether the HTTPRoute names the Service's `port` (its entry) as a parent: kind Service in
    the core group (group "" said: a parentRef's group defaults to Gateway API's own), the port
    by number or by name (sectionName), or all of them."""
    for ref in route.spec.get("parentRefs") or []:
        if (ref.get("kind") == "Service" and ref.get("group", GATEWAY_GROUP) == "" and ref.get("name") == service.name
                and ref.get("namespace", route.namespace) == service.namespace
                and ref.get("port") in (None, port.get("port"))
                and ref.get("sectionName") in (None, port.get("name"))):
            return True
    return False


def attached(routes: Iterable[KubeObject], service: KubeObject, port: Mapping,
             client_namespace: str | None = None) -> list[KubeObject]:
    """The routes that decide for a client in `client_namespace` (None: any) sending to the
    Service's port: its own namespace's consumer routes if it has any, else the producer routes
    (GAMMA: a producer route in the Service's namespace, a consumer route in the client's)."""
    routes = [r for r in routes if r.kind == "HTTPRoute" and attaches(r, service, port)]
    consumer = [r for r in routes if r.namespace == client_namespace and r.namespace != service.namespace]
    return consumer or [r for r in routes if r.namespace == service.namespace]


def _age(route: KubeObject) -> tuple[str, str, str]:
    return (str(route.metadata.get("creationTimestamp") or ""), route.namespace, route.name)


def route_problem(route: KubeObject) -> str | None:
    """Why the route cannot be used (a regular expression RE2 would refuse), or None. Such a
    route is left out whole, as a gateway leaves a route it does not accept."""
    for index, rule in enumerate(route.spec.get("rules") or []):
        for match in rule.get("matches") or []:
            patterns = [(match.get("path") or {}).get("value")] if (match.get("path") or {}).get("type") == PATH_REGEX else []
            patterns += [h.get("value") for h in [*(match.get("headers") or []), *(match.get("queryParams") or [])]
                         if h.get("type") == "RegularExpression"]
            for pattern in patterns:
                try:
                    re.compile(str(pattern))
                except re.error as error:
                    return f"rule {index}: {pattern!r} is not a regular expression ({error})"
                if _NOT_RE2.search(str(pattern)):
                    return f"rule {index}: {pattern!r} uses what RE2 does not have (lookaround, backreferences)"
    return None


def rules_of(routes: Iterable[KubeObject], service: KubeObject) -> list[Rule]:
    """Every (rule, match) of the routes, in the order a request is matched: by match
    precedence, then the oldest route, then the route's namespace/name, then the rule's order.
    A route with a problem (route_problem) is left out; an annotation that cannot be read is
    ignored, and its rules say so (Rule.problem), as Linkerd's policy controller logs and ignores it."""
    out: list[tuple[tuple, Rule]] = []
    for route in sorted(routes, key=_age):
        if route_problem(route):
            continue
        retry_from = route if any(k in route.annotations for k in RETRY_ANNOTATIONS) else service
        retry, problem = _readable(lambda: retry_of(retry_from.annotations,
                                                    f"{retry_from.kind} {retry_from.namespace}/{retry_from.name}"))
        for index, rule in enumerate(route.spec.get("rules") or [{}]):
            timeouts = rule.get("timeouts") or {}
            request_timeout, timeout_problem = _readable(
                lambda: _duration(timeouts.get("request"), "timeouts.request") if "request" in timeouts
                else _annotation_duration(route.annotations, TIMEOUT_REQUEST) or
                _annotation_duration(service.annotations, TIMEOUT_REQUEST))
            backend_timeout, backend_problem = _readable(
                lambda: _duration(timeouts.get("backendRequest"), "timeouts.backendRequest"))
            backends = tuple(Backend(ref.get("name"), ref.get("namespace", route.namespace), ref.get("port"),
                                     int(ref.get("weight", 1)))
                             for ref in rule.get("backendRefs") or []
                             if ref.get("kind", "Service") == "Service" and ref.get("group", "") == "")
            for match in rule.get("matches") or [{}]:
                made = Rule(f"{route.namespace}/{route.name}", index, _match(match), backends, request_timeout,
                            backend_timeout, retry, "; ".join(p for p in (problem, timeout_problem, backend_problem) if p))
                out.append(((made.match.precedence(), _age(route), index), made))
    return [rule for _, rule in sorted(out, key=lambda item: item[0])]


def _readable(read):
    """(what `read` gives, "") or (None, why it could not)."""
    try:
        return read(), ""
    except RouteError as error:
        return None, f"{error} (ignored)"


def default_rules(service: KubeObject, port: int) -> list[Rule]:
    """A Service port without a route: everything to the Service itself, with its annotations."""
    where = f"Service {service.namespace}/{service.name}"
    timeout, timeout_problem = _readable(lambda: _annotation_duration(service.annotations, TIMEOUT_REQUEST))
    retry, problem = _readable(lambda: retry_of(service.annotations, where))
    return [Rule("", 0, Match(), (Backend(service.name, service.namespace, port, 1),), timeout, None, retry,
                 "; ".join(p for p in (problem, timeout_problem) if p))]


def _match(spec: Mapping) -> Match:
    path = spec.get("path") or {}
    return Match(path.get("type", PATH_PREFIX), path.get("value", "/"), spec.get("method"),
                 tuple(sorted((h.get("type", "Exact"), str(h.get("name")).lower(), str(h.get("value")))
                              for h in spec.get("headers") or [])),
                 tuple(sorted((q.get("type", "Exact"), str(q.get("name")), str(q.get("value")))
                              for q in spec.get("queryParams") or [])))


def choose(rules: Iterable[Rule], request: Request) -> Rule | None:
    """The rule that takes the request, or None (a 404 from the proxy: no route matches)."""
    return next((rule for rule in rules if matches(rule.match, request)), None)


def matches(match: Match, request: Request) -> bool:
    if not _path_matches(match, request.path):
        return False
    if match.method is not None and request.method != match.method:
        return False
    for kind, name, value in match.headers:
        got = request.headers.get(name)
        if got is None or not (got == value if kind == "Exact" else re.fullmatch(value, got)):
            return False
    for kind, name, value in match.query:
        got = request.query.get(name)
        if got is None or not (got == value if kind == "Exact" else re.fullmatch(value, got)):
            return False
    return True


def _path_matches(match: Match, path: str) -> bool:
    if match.path_type == PATH_EXACT:
        return path == match.path
    if match.path_type == PATH_REGEX:
        return re.fullmatch(match.path, path) is not None
    prefix = match.path.rstrip("/")  # element-wise: /foo matches /foo and /foo/bar, not /foobar
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


# -- retries and timeouts ------------------------------------------------------------------------


def retry_of(annotations: Mapping[str, str], where: str) -> Retry | None:
    """Linkerd's retry annotations, or None (no retries). RouteError names a bad one."""
    codes = annotations.get(RETRY_HTTP)
    if codes is None:
        return None
    statuses: list[int] = []
    for item in (part.strip().lower() for part in codes.split(",") if part.strip()):
        found = re.fullmatch(r"(5xx)|(gateway-error)|(\d{3})(?:-(\d{3}))?", item)
        first, last = (500, 599) if found and found.group(1) else (502, 504) if found and found.group(2) else \
            (int(found.group(3)), int(found.group(4) or found.group(3))) if found else (0, -1)
        if not found or not 100 <= first <= last <= 599:
            raise RouteError(f"{where}: annotation {RETRY_HTTP}: {item!r} is not a status code, a range (500-504), "
                             "5xx or gateway-error")
        statuses += range(first, last + 1)
    limit_text = annotations.get(RETRY_LIMIT, "1")
    if not limit_text.isdigit():
        raise RouteError(f"{where}: annotation {RETRY_LIMIT}: {limit_text!r} is not a number of retries")
    # (0 reads as unset: Linkerd's default, one retry)
    return Retry(tuple(sorted(set(statuses))), int(limit_text) or 1, _annotation_duration(annotations, RETRY_TIMEOUT))


def _annotation_duration(annotations: Mapping[str, str], name: str) -> float | None:
    return _duration(annotations.get(name), f"annotation {name}")


def _duration(value, what: str) -> float | None:
    """A Gateway API or Linkerd duration in seconds; "0s" and absence: no timeout (None)."""
    if value in (None, ""):
        return None
    try:
        seconds = parse_go_duration(value)
    except ValueError:
        raise RouteError(f"{what}: {value!r} is not a duration (1s, 500ms, 1m30s)") from None
    return seconds or None


def weighted(backends: Iterable[Backend]) -> list[tuple[Backend, float]]:
    """Each backend with its share of the requests (weight 0: none)."""
    backends = list(backends)
    total = sum(b.weight for b in backends)
    return [(b, b.weight / total if total else 0.0) for b in backends]
