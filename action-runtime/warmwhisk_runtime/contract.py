"""OpenWhisk's action-container contract: every message, status and mapping in one place.

Sources are cited in ../shared/reference/ow-runtime-contract.md; section numbers below refer to it.
This module does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from . import jsoncodec

# §5: written as its own line, last on stdout and on stderr, once per activation.
SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

# §2, §4, §6: the exact messages the OpenWhisk test kit and invoker know.
ERR_REINIT = "Cannot initialize the action more than once."
ERR_NO_CODE = "Missing main/no code to execute."
ERR_NOT_DICT = "The action did not return a dictionary or array."
ERR_BUSY = "System not ready, status is running."
ERR_NOT_INITIALIZED = "System not initialized."
ERR_EXITED = "command exited"
ERR_ZIP_NO_MAIN = "Zip file does not include __main__.py"
ERR_BAD_VENV = "Invalid virtualenv. Zip file does not include 'activate_this.py'."
# JSON nested deeper than Python's recursion limit allows to parse or encode (a 400, not a 500).
_TOO_DEEP = "nested too deeply (at most about 900 levels of arrays and objects)"

# Status codes. A non-200 /run destroys the container (and its resident models), so only
# contract-mandated failures use one; exceptions in user code are 200 {"error": ...}.
OK = 200
BAD_REQUEST = 400
UNAUTHORIZED = 401
FORBIDDEN = 403
PAYLOAD_TOO_LARGE = 413
INIT_FAILED = 502
BAD_RESULT = 502
INTERNAL_ERROR = 500
# §1: the invoker reads 503 on either route as "container shutting down" and sends the
# activation to another container. Only for a container that is draining, never for user errors.
SHUTTING_DOWN = 503

ENV_PREFIX = "__OW_"

# Keys of a /run body that become __OW_* for that activation (§4). Unknown keys are mapped too.
ACTIVATION_CONTEXT_KEYS = (
    "namespace",
    "action_name",
    "action_version",
    "activation_id",
    "transaction_id",
    "deadline",
    "api_key",
)
# Of those, the ones that name the action (the same for each of its activations); the others
# belong to one activation (/init carries the triggering activation's, which must not stick).
ACTION_IDENTITY_KEYS = ("namespace", "action_name", "action_version")
PER_ACTIVATION_KEYS = tuple(k for k in ACTIVATION_CONTEXT_KEYS if k not in ACTION_IDENTITY_KEYS)

_BASE64 = re.compile(r"^[A-Za-z0-9+/=\r\n]+$")


class ContractError(Exception):
    """A request the contract says must fail, with the status and message to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def env_name(key: str) -> str:
    """`activation_id` -> `__OW_ACTIVATION_ID` (§4 mapping rule)."""
    return ENV_PREFIX + key.upper()


def env_value(value: Any) -> str:
    """Stringify like the invoker does: null -> "", strings as they are, the rest as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"))
    except RecursionError:
        # Parsed just below the recursion limit, then one frame deeper here: still the request's fault.
        raise ContractError(BAD_REQUEST, f"A value in the request is {_TOO_DEEP}.") from None


def is_binary_code(code: str) -> bool:
    """OpenWhisk's `Exec.isBinaryCode`: non-empty, length a multiple of 4, base64 alphabet."""
    trimmed = code.strip()
    return bool(trimmed) and len(trimmed) % 4 == 0 and bool(_BASE64.match(trimmed))


def decode_base64(code: str) -> bytes:
    try:
        return base64.b64decode(code.strip(), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ContractError(INIT_FAILED, f"Invalid base64 in 'code': {exc}") from exc


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse a request body; it must be one JSON object."""
    try:
        body = jsoncodec.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(BAD_REQUEST, f"The {what} body is not valid JSON: {exc}") from exc
    except RecursionError:
        # json's C scanner recurses once per level: `[` * 100_000 would otherwise be a 500.
        raise ContractError(BAD_REQUEST, f"The {what} body is not valid JSON: it is {_TOO_DEEP}.") from None
    if not isinstance(body, dict):
        raise ContractError(BAD_REQUEST, f"The {what} body must be a JSON object.")
    return body


def init_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `{"value": {name?, main?, code?, binary?, env?}}` (§2) into plain fields."""
    value = body.get("value")
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ContractError(BAD_REQUEST, "The /init 'value' must be a JSON object.")
    main = value.get("main") or "main"
    if not isinstance(main, str) or not main.isidentifier():
        raise ContractError(BAD_REQUEST, f"The /init 'main' must name a Python function, got {main!r}.")
    code = value.get("code")
    if code is not None and not isinstance(code, str):
        raise ContractError(BAD_REQUEST, "The /init 'code' must be a string.")
    binary = value.get("binary", False)
    if binary is None:
        binary = False
    if not isinstance(binary, bool):
        raise ContractError(BAD_REQUEST, "The /init 'binary' must be true or false.")
    env = value.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise ContractError(BAD_REQUEST, "The /init 'env' must be a JSON object.")
    for key, text in env.items():
        if not key or "=" in key or "\0" in key or "\0" in env_value(text):
            raise ContractError(
                BAD_REQUEST, f"The /init 'env' has a name or value no environment can hold: {key!r}."
            )
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        raise ContractError(BAD_REQUEST, "The /init 'name' must be a string.")
    return {
        "name": name or "",
        "main": main,
        "code": code or "",
        "binary": binary,
        "env": {str(k): env_value(v) for k, v in env.items()},
    }


def run_fields(body: Mapping[str, Any]) -> tuple[dict[str, Any] | list[Any], dict[str, str]]:
    """Split a /run body into the action's argument and its `__OW_*` context (§4)."""
    value = body.get("value")
    if value is None:
        value = {}
    if not isinstance(value, (dict, list)):
        raise ContractError(BAD_REQUEST, "The /run 'value' must be a JSON object or array.")
    context = {env_name(k): env_value(v) for k, v in body.items() if k != "value"}
    return value, context


def deadline_ms(context: Mapping[str, str], now_ms: float) -> float | None:
    """The deadline to enforce, as epoch milliseconds: `__OW_DEADLINE` when it is a number still
    in the future at `now_ms`; None (no deadline) otherwise.

    OpenWhisk's own runtime test kit sends placeholders (`"deadline": "123"`, long past) and
    expects the action to run and see them as `__OW_DEADLINE`; a deadline that has passed before
    the request arrived says nothing about this run (the invoker's clock, a test kit), and one
    that is not a number cannot be enforced. Either way the value is still the activation's
    `__OW_DEADLINE`, and the invoker still applies its own timeout."""
    raw = context.get(env_name("deadline"), "")
    try:
        value = float(raw)
    except ValueError:  # absent ("") or not a number
        return None
    return value if now_ms < value < float("inf") else None  # NaN compares false: None too


def error_body(message: str) -> dict[str, str]:
    return {"error": message}
