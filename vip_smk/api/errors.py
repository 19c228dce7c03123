"""The errors of every VIP call: `VipError` and its classes, decided from VIP's error code,
the HTTP status and the message (see `error_class`).

Messages name the call and its target (VIP path, pipeline, execution), never the API key.
"""

from __future__ import annotations

import re


class VipError(Exception):
    """Any failure talking to VIP. `.code` = VIP error code (or None), `.status` = HTTP status
    (or None), `.call` = the client call, `.target` = the VIP path / pipeline / execution."""

    def __init__(
        self,
        message: str,
        code: int | None = None,
        status: int | None = None,
        *,
        call: str | None = None,
        target: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.call = call
        self.target = target

    def __str__(self) -> str:
        return self.message


class AuthError(VipError):
    """Bad, missing or rejected API key (8002/8003/8004, HTTP 401)."""


class NotFound(VipError):
    """Path, pipeline or execution that does not exist."""


class PermissionDenied(VipError):
    """Not allowed (8013, 8008, HTTP 403)."""


class InvalidInput(VipError):
    """VIP refused the request's content (invalid ids, values, names, missing inputs...)."""


class TooLarge(InvalidInput):
    """A file above VIP's direct-transfer limit (`maxSizeDirectTransfer` of `GET platform`).
    `.size` and `.limit` in bytes."""

    def __init__(self, message: str, *, size: int, limit: int, call: str | None = None,
                 target: str | None = None):
        super().__init__(message, call=call, target=target)
        self.size = size
        self.limit = limit


class DescriptorUnavailable(VipError):
    """VIP does not serve the pipeline's Boutiques descriptor (`?format=boutiques`: portals
    older than 4.6 refuse it or answer the CARMIN pipeline); callers fall back to the CARMIN
    parameters."""


class CapacityError(VipError):
    """Too many executions (2000 platform limit, 2001 user limit)."""


class ServerError(VipError):
    """VIP failed (5xx, or an error page that is not a VIP JSON error)."""


class TransportError(VipError):
    """The network failed (connection refused/reset, timeout, truncated body)."""


AUTH_CODES = frozenset({8002, 8003, 8004})
NOTFOUND_CODES = frozenset({8006, 8007})
PERMISSION_CODES = frozenset({8008, 8013})
CAPACITY_CODES = frozenset({2000, 2001})
INVALID_CODES = frozenset({8005, 8009, 8010, 8011, 8012, 8014, 8015, 8016, 8017, 8018, 8019, 8020, 2002})
NOT_IMPLEMENTED = 8001
_MISSING_RE = re.compile(
    r"(does ?n[o']t exist|not exist|no such|not found|unknown (path|file|directory))", re.I
)


# Calls on `executions/{id}`: VIP-portal 4.6 answers an unknown (or another user's) execution
# with a bare 8000 and its generic message (checkIfUserCanAccessExecution), so there 8000 is NotFound.
EXECUTION_CALLS = frozenset({"execution", "results", "stdout", "stderr", "kill", "delete_execution",
                             "rename_execution", "wait"})


def error_class(code: int | None, status: int | None, message: str, *, call: str | None = None) -> type[VipError]:
    """The class of a VIP error reply (VIP JSON `errorCode`, HTTP status, message; `call`: ours)."""
    if code == 8000 and call in EXECUTION_CALLS:
        return NotFound
    if code in AUTH_CODES:
        return AuthError
    if code in CAPACITY_CODES:
        return CapacityError
    if code in NOTFOUND_CODES:
        return NotFound
    if code in PERMISSION_CODES:
        return PermissionDenied
    if code in INVALID_CODES:
        return InvalidInput
    if code == 8000 and _MISSING_RE.search(message or ""):
        return NotFound
    if status == 401:
        return AuthError
    if status == 403:
        return PermissionDenied
    if status == 404 and code is not None:
        return NotFound
    if status is not None and status >= 500:
        return ServerError
    if code is not None:
        return InvalidInput
    return ServerError


__all__ = [
    "AuthError",
    "CapacityError",
    "DescriptorUnavailable",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "ServerError",
    "TooLarge",
    "TransportError",
    "VipError",
    "error_class",
]
