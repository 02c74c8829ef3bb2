"""Validation against the Kubernetes API's own OpenAPI schemas.

The schemas come from kubernetes-validate (JSON Schema generated from the official OpenAPI,
one directory per Kubernetes release). Its own `validate()` re-reads and re-compiles the
1.8 MB definitions file for every object; here each kind's schema is compiled once with
jsonschema-rs and reused, which is what makes 10,000 objects cheap. The strict variant is
used: unknown fields are errors, as with `kubectl apply --validate=strict`.
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
_UNEXPECTED = re.compile(r"'([^']+)' (?:was|were) unexpected")
_REQUIRED = re.compile(r'^"([^"]+)" is a required property')


class SchemaValidator:
    def __init__(self, kubernetes_version: str = KUBERNETES_VERSION):
        self.kubernetes_version = kubernetes_version
        self._validators: dict[str, Any] = {}

    @cached_property
    def _directory(self) -> Path:
        # found without importing the package: its __init__ imports jsonschema and attrs,
        # about 60 ms of every `podnet apply`, and only its data files are used
        spec = find_spec("kubernetes_validate")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("kubernetes_validate (the Kubernetes JSON schemas) is not installed")
        root = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"
        return root / f"v{self.kubernetes_version}-local-strict"

    @cached_property
    def _registry(self) -> jsonschema_rs.Registry:
        definitions = json.loads(self._directory.joinpath("_definitions.json").read_text())
        return jsonschema_rs.Registry([(_DEFINITIONS_URI, definitions)])

    def _validator(self, info: KindInfo):
        validator = self._validators.get(info.kind)
        if validator is None:
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
    return Problem(path, message)
