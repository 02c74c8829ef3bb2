"""The resources the API server serves: every kind podnet understands (podnet.api.kinds), at
the group and version podnet stores it in, plus Events and the review kinds that are only ever
created (access reviews, `kubectl auth whoami`'s SelfSubjectReview), and ReplicationControllers,
read only: the core group's old workload, which podnet does not run, listed empty.

A resource is found by (group, version, plural) as the URL names it; its verbs and
subresources are what discovery advertises and what the handlers accept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podnet.api.kinds import KINDS, KindInfo

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = READ + WRITE
    subresources: tuple[str, ...] = ()
    info: KindInfo | None = field(default=None, compare=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def stored(self) -> bool:
        """Objects of it are kept (reviews are answered and forgotten)."""
        return "get" in self.verbs


_SUBRESOURCES = {
    "Pod": ("status", "log", "exec", "attach", "portforward", "proxy", "binding", "eviction", "ephemeralcontainers"),
    "Service": ("status", "proxy"),
    "Node": ("status", "proxy"),
    "Namespace": ("status", "finalize"),
    "Deployment": ("status", "scale"),
    "ReplicaSet": ("status", "scale"),
    "StatefulSet": ("status", "scale"),
    "DaemonSet": ("status",),
    "Ingress": ("status",),
    "ServiceAccount": ("token",),
}


def _from_kinds() -> list[Resource]:
    found = []
    for info in KINDS:
        group, _, version = info.api_version.rpartition("/")
        found.append(Resource(group, version, info.plural, info.kind, info.namespaced, info.short_names,
                              subresources=_SUBRESOURCES.get(info.kind, ()), info=info))
    return found


_EXTRA = [
    Resource("", "v1", "events", "Event", True, ("ev",)),
    Resource("events.k8s.io", "v1", "events", "Event", True, ("ev",)),
    # every API server has them, and `kubectl cluster-info dump` lists them; podnet runs none (a
    # Deployment is what it runs), so they are only read, and there are none
    Resource("", "v1", "replicationcontrollers", "ReplicationController", True, ("rc",), verbs=READ),
    Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False, verbs=("create",)),
    Resource("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False, verbs=("create",)),
    Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False, verbs=("create",)),
    Resource("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", True, verbs=("create",)),
    Resource("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, verbs=("create",)),
    Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",)),
]

RESOURCES: tuple[Resource, ...] = tuple(_from_kinds() + _EXTRA)
BY_PATH: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND: dict[str, Resource] = {}
for _resource in RESOURCES:  # the kind's home: its first (core events before events.k8s.io)
    BY_KIND.setdefault(_resource.kind, _resource)


def groups() -> dict[str, list[str]]:
    """group -> its versions ("" is the core group, served under /api)."""
    found: dict[str, list[str]] = {}
    for resource in RESOURCES:
        versions = found.setdefault(resource.group, [])
        if resource.version not in versions:
            versions.append(resource.version)
    return found


def in_group_version(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]
