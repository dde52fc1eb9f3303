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

# Status codes. A non-200 /run destroys the container (and its resident models), so only
# contract-mandated failures use one; exceptions in user code are 200 {"error": ...}.
OK = 200
BAD_REQUEST = 400
FORBIDDEN = 403
PAYLOAD_TOO_LARGE = 413
INIT_FAILED = 502
BAD_RESULT = 502
INTERNAL_ERROR = 500

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
    return json.dumps(value, separators=(",", ":"))


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
        body = json.loads(raw, parse_constant=_reject_constant) if raw else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(BAD_REQUEST, f"The {what} body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ContractError(BAD_REQUEST, f"The {what} body must be a JSON object.")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


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


def deadline_ms(context: Mapping[str, str]) -> float | None:
    """`__OW_DEADLINE` as epoch milliseconds; None when absent."""
    raw = context.get(env_name("deadline"), "")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise ContractError(BAD_REQUEST, f"The deadline must be epoch milliseconds, got {raw!r}.")
    return value


def error_body(message: str) -> dict[str, str]:
    return {"error": message}
