"""API errors as the API server answers them: a metav1.Status with the HTTP code, a reason
kubectl knows (it prints 'Error from server (NotFound): …' from reason and message), details
naming the object."""

from __future__ import annotations

from typing import Any

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           406: "NotAcceptable", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


class ApiError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _details(name: str, group: str, plural: str) -> dict[str, Any]:
    return {"name": name, **({"group": group} if group else {}), "kind": plural}


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, f'{qualified(plural, group)} "{name}" not found', details=_details(name, group, plural))


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, f'{qualified(plural, group)} "{name}" already exists', "AlreadyExists",
                    _details(name, group, plural))


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}', "Conflict",
                    _details(name, group, plural))


def invalid(kind: str, group: str, name: str, message: str, causes: list[dict[str, str]] | None = None) -> ApiError:
    details = {"name": name, **({"group": group} if group else {}), "kind": kind, "causes": causes or []}
    return ApiError(422, f'{kind}{"." + group if group else ""} "{name}" is invalid: {message}', "Invalid", details)


def success(details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            **({"details": details} if details else {})}
