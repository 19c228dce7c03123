"""VIP-portal 4.6's error codes and the errors its request handling answers (bean validation,
unreadable bodies), for the local VIP server's routes."""

from __future__ import annotations

import json

from starlette.requests import Request

from vip_smk.server.store import ApiError

#: VIP-portal 4.6's error codes (ApiException.ApiError 8000-8020, ApplicationException's
#: ApplicationError 2000-2002): enum name and raw message ({} = a parameter; None: no message,
#: the platform lists "The error message for '<name>' cannot be known in advance")
VIP_ERRORS: dict[int, tuple[str, str | None]] = {
    8000: ("GENERIC_API_ERROR", "An error has been encountered on the VIP API"),
    8001: ("NOT_IMPLEMENTED", "The {} method is not implemented in the VIP API"),
    8002: ("BAD_CREDENTIALS", "Bad credentials"),
    8003: ("INSUFFICIENT_AUTH", None),
    8004: ("AUTHENTICATION_ERROR", None),
    8005: ("INVALID_PIPELINE_IDENTIFIER", "The {} pipeline identifier is not valid"),
    8006: ("APPLICATION_NOT_FOUND", None),
    8007: ("PIPELINE_NOT_FOUND", "The {} pipeline does not exists or cannot be used"),
    8008: ("NOT_ALLOWED_TO_USE_PIPELINE", "Not allowed to access pipeline {}"),
    8009: ("INPUT_FIELD_NOT_VALID", "Input field '{}' is not valid. Cause : {}"),
    8010: ("WRONG_DATE_FORMAT", "The date {} have a wrong format (needed : {})"),
    8011: ("WRONG_STAT_SERVICE", "The service {} is unknown, only 'vip' is possible"),
    8012: ("COUNTRY_UNKNOWN", "Country unknown : {}"),
    8013: ("UNAUTHORIZED_DATA_ACCESS", "Unauthorized data access to : {}"),
    8014: ("WRONG_OIDC_LOGIN", "The login process encountered an error"),
    8015: ("INVALID_EXECUTION_ID", "No execution available with this id : {}"),
    8016: ("INVALID_EXAMPLE_ID", "There is no example with the id : {}"),
    8017: ("NOT_COMPATIBLE_WITH_BOUTIQUES", "The pipeline is not compatible with boutiques : {}"),
    8018: ("INPUT_FIELD_MISSING", "Input field '{}' is missing"),
    8019: ("INVALID_EXECUTION_NAME", "The execution name is not valid : Cause {}"),
    8020: ("INVALID_EXECUTION_INIT", "The execution could not be submitted : Cause {}"),
    2000: ("PLATFORM_MAX_EXECS", "Max number of running executions reached on the platform."),
    2001: ("USER_MAX_EXECS", "Max number of running executions reached.<br />You already have {} "
           "running executions."),
    2002: ("WRONG_APPLICATION_DESCRIPTOR", "Error getting application descriptor for {}."),
}
GENERIC: str = VIP_ERRORS[8000][1] or ""

def error_list() -> list[dict]:
    """GET /platform's ``APIErrorCodesAndMessages``: every VIP error code, VIP's raw message."""
    return [
        {"errorCode": code,
         "errorMessage": msg if msg is not None else
         f"The error message for '{name.replace('_', ' ').lower()}' cannot be known in advance"}
        for code, (name, msg) in VIP_ERRORS.items()
    ]


def not_valid(field: str, cause: str = "must not be null") -> ApiError:
    """8009 as VIP's bean validation words it (the first invalid field of the body)."""
    return ApiError(8009, f"Input field '{field}' is not valid. Cause : {cause}")


def unreadable(what: str) -> ApiError:
    """A body Spring cannot read (absent, not JSON, wrong shape): VIP's generic 8000, HTTP 400."""
    return ApiError(8000, f"{GENERIC}: {what}")


async def json_body(request: Request) -> dict:
    """The request's JSON object body; absent, not JSON or not an object: VIP's 8000."""
    raw = await request.body()
    if not raw.strip():
        raise unreadable("the request body is missing (a JSON object is expected)")
    try:
        body = json.loads(raw)
    except ValueError:
        raise unreadable("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise unreadable("the request body must be a JSON object")
    return body
