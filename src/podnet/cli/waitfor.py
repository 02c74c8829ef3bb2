"""What `podnet wait --for=…` waits for, read and judged as kubectl wait does (pure).

kubectl (pkg/cmd/wait) knows four goals: `create`, `delete`, `condition=NAME[=VALUE]` (the
object's status.conditions has type NAME — compared case-insensitively — with status VALUE,
`true` by default, also compared case-insensitively; not while an observedGeneration lags
behind metadata.generation) and `jsonpath='{EXPR}'[=VALUE]` (EXPR finds exactly one value, a
scalar printed as Go's %v prints it equals VALUE; without a VALUE, that it finds one). The
JSONPath subset here is what wait expressions use: fields, `[N]`, `[*]` and filters
`[?(@.field=="value")]`. The messages are kubectl's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podnet.errors import PodnetError


class WaitError(PodnetError):
    """kubectl wait's errors: one line, exit code 1."""


@dataclass(frozen=True)
class Create:
    pass


@dataclass(frozen=True)
class Delete:
    pass


@dataclass(frozen=True)
class Condition:
    name: str
    value: str = "true"

    def met(self, body: Mapping[str, Any]) -> bool:
        status = body.get("status")
        conditions = status.get("conditions") if isinstance(status, dict) else None
        for condition in conditions if isinstance(conditions, list) else []:
            if not isinstance(condition, dict) or str(condition.get("type", "")).casefold() != self.name.casefold():
                continue
            if not isinstance(condition.get("status"), str):
                continue
            generation = (body.get("metadata") or {}).get("generation")
            observed = condition.get("observedGeneration", status.get("observedGeneration"))
            if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
                return False  # a controller's verdict on an older spec
            return condition["status"].casefold() == self.value.casefold()
        return False


@dataclass(frozen=True)
class JSONPath:
    expression: str  # as kubectl relaxes it: {.a.b}
    steps: tuple[tuple[str, str, str], ...]  # ("field", name, ""), ("index", "3"|"*", ""), ("filter", path, value)
    value: str | None  # None: any value found

    def met(self, body: Mapping[str, Any]) -> bool:
        found = evaluate(self.steps, body)
        if not found:
            return False
        if len(found) > 1:
            raise WaitError("error: given jsonpath expression matches more than one value")
        if self.value is None:
            return True
        if isinstance(found[0], (dict, list)):
            raise WaitError("error: jsonpath leads to a nested object or list which is not supported")
        return go_value(found[0]).strip() == self.value.strip()


Goal = Create | Delete | Condition | JSONPath
JSONPATH_FORMAT = ("error: jsonpath wait format must be --for=jsonpath='{.status.readyReplicas}'=3 "
                   "or --for=jsonpath='{.status.readyReplicas}'")


def parse_for(text: str | None) -> Goal:
    """--for's value, or kubectl's error for it."""
    text = text or ""
    if text.lower() == "create":
        return Create()
    if text.lower() == "delete":
        return Delete()
    if text.startswith("condition="):
        name, _, value = text[len("condition="):].partition("=")
        return Condition(name, value if "=" in text[len("condition="):] else "true")
    if text.startswith("jsonpath="):
        parts = split_jsonpath(text)[1:]
        if len(parts) > 2:
            raise WaitError(JSONPATH_FORMAT)
        expression = relaxed(parts[0])
        if expression == "":
            raise WaitError("error: jsonpath expression cannot be empty")
        value = None
        if len(parts) == 2:
            value = parts[1].strip("'\"")
            if not value:
                raise WaitError("error: jsonpath wait has to have a value after equal sign, "
                                "like --for=jsonpath='{.status.readyReplicas}'=3")
        return JSONPath(expression, parse_steps(expression), value)
    raise WaitError(f'error: unrecognized condition: "{text}"')


def split_jsonpath(text: str) -> list[str]:
    """On each `=` that is not part of `==` (a filter's comparison), as kubectl splits it."""
    return [part.replace("\0", "==") for part in text.replace("==", "\0").split("=")]


_RELAXED = re.compile(r"^\{\.?([^{}]+)\}$|^\.?([^{}]+)$")


def relaxed(text: str) -> str:
    """kubectl's RelaxedJSONPathExpression: `a.b`, `.a.b`, `{a.b}` and `{.a.b}` are `{.a.b}`."""
    if not text:
        return ""
    match = _RELAXED.match(text)
    if match is None:
        raise WaitError("error: unexpected path string, expected a 'name1.name2' or '.name1.name2' or "
                        "'{name1.name2}' or '{.name1.name2}'")
    return "{." + (match.group(1) or match.group(2)) + "}"


_STEP = re.compile(r"""\.(?P<field>[^.\[\]]+)
                     |\[(?P<index>-?\d+|\*)\]
                     |\[\?\(@\.(?P<path>[^=!<>\s]+)\s*==\s*(?P<quote>["'])(?P<value>.*?)(?P=quote)\)\]""", re.X)


def parse_steps(expression: str) -> tuple[tuple[str, str, str], ...]:
    inner, steps, at = expression[1:-1], [], 0
    while at < len(inner):
        match = _STEP.match(inner, at)
        if match is None:
            raise WaitError(f"error: unsupported jsonpath expression {expression!r} at {inner[at:]!r} "
                            "(podnet reads fields, [N], [*] and [?(@.field==\"value\")])")
        if match.group("field") is not None:
            steps.append(("field", match.group("field"), ""))
        elif match.group("index") is not None:
            steps.append(("index", match.group("index"), ""))
        else:
            steps.append(("filter", match.group("path"), match.group("value")))
        at = match.end()
    return tuple(steps)


def evaluate(steps, body: Any) -> list[Any]:
    """The values the steps lead to (missing keys lead nowhere, as kubectl's AllowMissingKeys)."""
    values = [body]
    for kind, arg, value in steps:
        out = []
        for current in values:
            if kind == "field" and isinstance(current, dict) and arg in current:
                out.append(current[arg])
            elif kind == "index" and arg == "*":
                out += list(current.values()) if isinstance(current, dict) else current if isinstance(current, list) else []
            elif kind == "index" and isinstance(current, list) and -len(current) <= int(arg) < len(current):
                out.append(current[int(arg)])
            elif kind == "filter" and isinstance(current, list):
                path = tuple(("field", name, "") for name in arg.split("."))
                out += [item for item in current if any(go_value(v) == value for v in evaluate(path, item))]
        values = out
    return values


def go_value(value: Any) -> str:
    """A JSON scalar as Go's %v prints it (true, 3, 0.5, <nil>)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)
