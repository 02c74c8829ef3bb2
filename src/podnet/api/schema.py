"""Validation against the Kubernetes API's own OpenAPI schemas.

The schemas come from kubernetes-validate (JSON Schema generated from the official OpenAPI,
one directory per Kubernetes release). Its own `validate()` re-reads and re-compiles the
1.8 MB definitions file for every object; here each kind's schema is compiled once with
jsonschema-rs and reused, which is what makes 10,000 objects cheap. The strict variant is
used: unknown fields are errors, as with `kubectl apply --validate=strict`.

Kinds that are CRDs upstream (AdminNetworkPolicy, BaselineAdminNetworkPolicy; Istio's
AuthorizationPolicy and PeerAuthentication) are not in those schemas: podnet ships its own
(api/schemas/), written from the CRDs and protos, in the same registry so it
reuses the Kubernetes definitions of ObjectMeta and LabelSelector. A CRD schema uses keywords the
built-in ones do not (enum, minimum, maxItems, min/maxProperties for exactly-one-of fields); their
errors are worded as the API server words them.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import jsonschema_rs

from podnet.api.kinds import KindInfo
from podnet.api.problems import Problem

KUBERNETES_VERSION = "1.37.0"
_DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"
# podnet's own schemas (package data in podnet/api/schemas, each with the $id OWN_SCHEMA_BASE + its
# file name): the kinds each defines
OWN_SCHEMAS = {
    "policy-networking-v1alpha1.json": frozenset({"AdminNetworkPolicy", "BaselineAdminNetworkPolicy"}),
    "security-istio-v1.json": frozenset({"AuthorizationPolicy", "PeerAuthentication"}),
    "gateway-networking-v1.json": frozenset({"HTTPRoute"}),
}
OWN_SCHEMA_DIRECTORY = Path(__file__).parent / "schemas"
_OWN_SCHEMA_BASE = "https://podnet.invalid/schemas/"
_UNEXPECTED = re.compile(r"'([^']+)' (?:was|were) unexpected")
_REQUIRED = re.compile(r'^"([^"]+)" is a required property')


def schema_directory(kubernetes_version: str = KUBERNETES_VERSION) -> Path:
    """kubernetes-validate's strict schemas for one release: one file per kind and _definitions.json."""
    # found without importing the package: its __init__ imports jsonschema and attrs,
    # about 60 ms of every `podnet apply`, and only its data files are used
    spec = find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("kubernetes_validate (the Kubernetes JSON schemas) is not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"
    return root / f"v{kubernetes_version}-local-strict"


def own_schema_file(kind: str) -> str | None:
    """The file of podnet's own schema defining `kind` (a CRD upstream), or None."""
    return next((file for file, kinds in OWN_SCHEMAS.items() if kind in kinds), None)


def is_own_schema_kind(kind: str) -> bool:
    """Kinds that are CRDs upstream, whose schema podnet ships itself (OWN_SCHEMAS)."""
    return own_schema_file(kind) is not None


class SchemaValidator:
    def __init__(self, kubernetes_version: str = KUBERNETES_VERSION):
        self.kubernetes_version = kubernetes_version
        self._validators: dict[str, Any] = {}

    @cached_property
    def _directory(self) -> Path:
        return schema_directory(self.kubernetes_version)

    @cached_property
    def _registry(self) -> jsonschema_rs.Registry:
        definitions = json.loads(self._directory.joinpath("_definitions.json").read_text())
        own = [(_OWN_SCHEMA_BASE + file, json.loads((OWN_SCHEMA_DIRECTORY / file).read_text())) for file in OWN_SCHEMAS]
        return jsonschema_rs.Registry([(_DEFINITIONS_URI, definitions), *own])

    def _validator(self, info: KindInfo):
        validator = self._validators.get(info.kind)
        if validator is None:
            own = own_schema_file(info.kind)
            if own is not None:
                schema = {"$ref": f"{_OWN_SCHEMA_BASE}{own}#/$defs/{info.kind}"}
            else:
                schema = json.loads(self._directory.joinpath(info.schema_name + ".json").read_text())
            validator = jsonschema_rs.validator_for(
                schema, registry=self._registry, base_uri=f"https://kubernetes.io/api/{info.schema_name}.json"
            )
            self._validators[info.kind] = validator
        return validator

    def problems(self, info: KindInfo, body: dict[str, Any]) -> list[Problem]:
        validator = self._validator(info)
        if validator.is_valid(body):  # the fast path: no error objects built
            return []
        return [_problem(error) for error in validator.iter_errors(body)]


def _problem(error: Any) -> Problem:
    path = tuple(error.instance_path)
    message = error.message
    kind = type(error.kind).__name__
    if kind == "AdditionalProperties":
        names = _UNEXPECTED.search(message)
        if names:
            field = names.group(1).split("', '")[0]
            return Problem(path + (field,), "unknown field")
    if kind == "Required":
        missing = _REQUIRED.search(message)
        if missing:
            return Problem(path + (missing.group(1),), "Required value")
    if kind == "OneOfNotValid" and "IntOrString" in "".join(map(str, error.schema_path)):
        return Problem(path, f"must be an integer or a string, not {json.dumps(error.instance)}")
    worded = _crd_wording(kind, error.kind, error.instance)
    return Problem(path, worded or message)


def _crd_wording(kind: str, details: Any, instance: Any) -> str | None:
    """The API server's words for the CRD keywords of podnet's own schemas."""
    shown = json.dumps(instance, ensure_ascii=False)
    if kind == "Enum":
        supported = ", ".join(json.dumps(option) for option in details.options)
        return f"Unsupported value: {shown}: supported values: {supported}"
    if kind == "Minimum":
        return f"Invalid value: {shown}: must be greater than or equal to {details.limit}"
    if kind == "Maximum":
        return f"Invalid value: {shown}: must be less than or equal to {details.limit}"
    if kind == "MaxItems":
        return f"Too many: {len(instance)}: must have at most {details.limit} items"
    if kind == "MinItems":
        return f"Required value: must have at least {details.limit} item{'s' if details.limit != 1 else ''}"
    if kind == "MaxLength":
        return f"Too long: may not be more than {details.limit} characters"
    if kind == "MinProperties" and details.limit == 1:
        return "Required value: exactly one field must be set"
    if kind == "MaxProperties" and details.limit == 1:
        return f"Forbidden: exactly one field must be set, not {len(instance)} ({', '.join(sorted(instance))})"
    return None
