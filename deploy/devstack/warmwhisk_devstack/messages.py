"""OpenWhisk's own texts, in one place: every error the stack answers uses one of these.

Sources (apache/openwhisk at 1fae641a2; pekko-http v1.1.0 for rejection texts) are noted per
group; `../shared/reference/ow-rest-api.md` has the line numbers.
"""

from __future__ import annotations

# -- authentication (BasicAuthenticationDirective.scala; pekko RejectionHandler) --------------------
AUTH_MISSING = "The resource requires authentication, which was not supplied with the request"
AUTH_INVALID = "The supplied authentication is invalid"
AUTH_CHALLENGE = 'Basic realm="OpenWhisk secure realm"'


def not_authorized(fqname: str) -> str:
    """403 for another namespace's resource (AuthorizedRouteDispatcher.scala, Messages)."""
    return f"The supplied authentication is not authorized to access '{fqname}'."


# -- generic (ErrorResponse.scala Messages; pekko defaults) ------------------------------------------
NOT_FOUND = "The requested resource does not exist."
ROUTE_NOT_FOUND = "The requested resource could not be found."
INTERNAL_ERROR = "There was an internal server error."
METHOD_NOT_ALLOWED = "HTTP method not allowed, supported methods: {methods}"
UNAVAILABLE = "The server is currently unavailable (because it is overloaded or down for maintenance)."

# -- entities (Entities.scala, EntityPath.scala) ------------------------------------------------------
ILLEGAL_NAME = "The name of the entity contains illegal characters."


def name_too_long(length: int) -> str:
    return f"Name segement longer than allowed: {length} > 256."  # sic, as OpenWhisk spells it


# -- bodies (pekko MarshallingDirectives / RejectionHandler) -----------------------------------------
# spray-json's DeserializationException texts (JsValue.asJsObject; ProductFormats.fromField).
JSON_OBJECT_EXPECTED = "JSON object expected"


def object_expected_in_field(name: str) -> str:
    return f"Object expected in field '{name}'"


def malformed_content(detail: str) -> str:
    return f"The request content was malformed:\n{detail}"


def malformed_query(name: str, detail: str) -> str:
    return f"The query parameter '{name}' was malformed:\n{detail}"


def unsupported_content_type(content_type: str) -> str:
    return f"The request's Content-Type [{content_type}] is not supported. Expected:\napplication/json"


def request_too_large(size: int, limit: int) -> str:
    return f"Request larger than allowed: {size} > {limit} bytes."


def field_too_large(what: str, size: int, limit: int) -> str:
    """413 for ``exec``, ``parameters`` or ``annotations`` over their limit (WhiskEntity.scala)."""
    return f"{what} larger than allowed: {size} > {limit} bytes."


# -- actions (Actions.scala, Exec.scala, ApiUtils.scala) ---------------------------------------------
EXISTS = "resource already exists"
EXEC_UNDEFINED = "exec undefined"
KIND_NOT_STRING = "'kind' must be a string defined in 'exec'"
RESERVED_PARAMETERS = "Request defines parameters that are not allowed (e.g., reserved properties)."


def unsupported_kind(kind: str, valid: list[str]) -> str:
    listed = ", ".join(f"'{k}'" for k in valid)
    return f"The specified runtime '{kind}' is not supported by this platform. Valid values are: {listed}."


def code_not_string(kind: str, attached: bool = False) -> str:
    what = "a string or attachment object" if attached else "a string"
    return f"'code' must be {what} defined in 'exec' for '{kind}' actions"


def main_not_string(kind: str) -> str:
    return f"if defined, 'main' be a string in 'exec' for '{kind}' actions"  # sic (Exec.scala L292-296)


def deprecated_kind(kind: str) -> str:
    return (
        f"The '{kind}' runtime is no longer supported. You may read and delete but not update or "
        "invoke this action."
    )


IMAGE_NOT_STRING = "'image' must be a string defined in 'exec' for 'blackbox' actions"


# -- limits (TimeLimit.scala, MemoryLimit.scala, LogLimit.scala, IntraConcurrencyLimit.scala) --------
# Which texts a limit uses: (label, unit) as OpenWhisk prints them; "above"/"below" then follow.
LIMIT_TEXTS = {
    "timeout": ("duration", "milliseconds"),
    "memory": ("memory size", "MB"),
    "logs": ("log size", "MB"),
    "concurrency": ("concurrency", ""),
}
# The "whole number" texts of a limit that is a number but not an integer (Limits' serdes).
LIMIT_WHOLE = {
    "timeout": "time limit must be whole number",
    "memory": "memory limit must be whole number",
    "logs": "log limit must be whole number",
    "concurrency": "intra concurrency limit must be whole number",
}
LIMIT_MALFORMED = {
    "timeout": "time limit malformed",
    "memory": "memory limit malformed",
    "logs": "log limit malformed",
    "concurrency": "intra concurrency limit malformed",
}


def limit_out_of_range(field: str, value: int, bound: int, above: bool) -> str:
    label, unit = LIMIT_TEXTS[field]
    value_text = f"{value} {unit}".rstrip()
    bound_text = f"{bound} {unit}".rstrip()
    where = "exceeds" if above else "below"
    return f"{label} {value_text} {where} allowed threshold of {bound_text}"


# -- queries (RestAPIs.scala, Activations.scala, ActivationId.scala) ---------------------------------
def not_boolean(value: str) -> str:
    return f"'{value}' is not a valid Boolean value"


def not_integer(value: str, collection: str) -> str:
    return f"The value '{value}' is not an integer for {collection}."


def out_of_range(value: int, high: int, collection: str) -> str:
    return f"The value '{value}' is not in the range of 0 to {high} for {collection}."


def below_zero(value: int, collection: str) -> str:
    return f"The value '{value}' is not greater than or equal to 0 for {collection}."


TIMEOUT_MALFORMED = "Timeout must be number of milliseconds up to {max_ms}."
DOCS_WITH_COUNT = "The parameter 'docs' is not permitted with 'count'."


def bad_name_filter(value: str) -> str:
    return f"Parameter may be a 'simple' name or 'package-name/simple' name: {value}"


def bad_epoch(value: str) -> str:
    return f"Parameter is not a valid value for epoch seconds: {value}"  # ms, despite the text


def activation_id_length(length: int) -> str:
    return f"Activation id length is {length} but must be 32."


ACTIVATION_ID_INVALID = "The activation id is not valid."

# -- activation results (ActivationResult.scala, Container.scala, ContainerProxy.scala) -------------
STATUS_TEXT = {0: "success", 1: "application error", 2: "action developer error", 3: "whisk internal error"}


def init_failed(detail: str) -> str:
    return f"The action failed during initialization: {detail}"


def timed_out(limit_ms: int, during_init: bool = False) -> str:
    where = " during initialization" if during_init else ""
    return f"The action exceeded its time limits of {limit_ms} milliseconds{where}."


def not_json(body: str) -> str:
    return f"The action did not produce a valid JSON or JSON Array response: {body}"


def response_too_large(size: int, limit: int, truncated: str) -> str:
    return (
        f"The action produced a response that exceeded the allowed length: {size} > {limit} bytes. "
        f"The truncated response was: {truncated}"
    )


ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."
ABNORMAL_INIT = "The action did not initialize and exited unexpectedly."
DID_NOT_RUN = "The action did not initialize or run as expected. Log data might be missing."
NO_RESOURCES = "Failed to provision resources to run the action."
LOGS_TRUNCATED = "Logs were truncated because the total bytes size exceeds the limit of {limit} bytes."
