"""?labelSelector= and ?fieldSelector= as one predicate on a body, and limit/continue paging.

Label selectors are podnet's one parser (podnet.api.labels, kubectl's syntax); field selectors
are podnet.api.fieldselectors. A `continue` token names the last key of the page it follows
and the resourceVersion of the list it came from; the next page is read from the cache as it
is then (kube-apiserver reads it from etcd at the old revision — documented difference).
"""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Mapping
from typing import Any

from podnet.api import fieldselectors, labels
from podnet.apiserver.errors import ApiError
from podnet.errors import PodnetError


def predicate(kind: str, plural: str, query: Mapping[str, str]):
    label_text, field_text = query.get("labelSelector") or "", query.get("fieldSelector") or ""
    try:
        by_labels = labels.parse(label_text) if label_text else None
        by_fields = fieldselectors.parse(field_text, kind, plural) if field_text else None
    except (PodnetError, ValueError) as exc:
        raise ApiError(400, f"unable to parse requirement: {exc}" if label_text and not field_text else str(exc)) \
            from None
    if by_labels is None and by_fields is None:
        return lambda body: True

    def selected(body: Mapping[str, Any]) -> bool:
        if by_labels is not None and not by_labels.matches((body.get("metadata") or {}).get("labels") or {}):
            return False
        return by_fields is None or by_fields(body)
    return selected


def named_in(field_text: str) -> str:
    """The name a fieldSelector pins (metadata.name=NAME), as kubectl's watch of one object sends it."""
    for term in field_text.split(","):
        key, _, value = term.partition("=")
        if key.strip() == "metadata.name" and not key.endswith("!"):
            return value.lstrip("=").strip()
    return ""


def page(items: list[dict[str, Any]], query: Mapping[str, str], resource_version: int) -> tuple[list[dict[str, Any]], str, int]:
    """The page `limit`/`continue` ask for: (items, the next continue token or "", how many remain)."""
    start = 0
    token = query.get("continue")
    if token:
        try:
            state = json.loads(base64.urlsafe_b64decode(token.encode()))
            after = tuple(state["after"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, "continue key is not valid: the list was changed or the token is corrupt") from None
        start = bisect.bisect_right(items, after, key=_key)  # items are in key order (the cache's lists)
    limit = int(query.get("limit") or 0)
    if limit <= 0 or start + limit >= len(items):
        return items[start:], "", 0
    chosen = items[start:start + limit]
    token = base64.urlsafe_b64encode(json.dumps({"after": list(_key(chosen[-1])), "rv": resource_version}).encode())
    return chosen, token.decode(), len(items) - start - limit


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    metadata = body.get("metadata") or {}
    return (metadata.get("namespace") or "", metadata.get("name") or "")
