"""Activation records as OpenWhisk's invoker and controller make them, without I/O.

`classify_run` and `classify_init` turn a container's answer into OpenWhisk's status code and
result (ActivationResult.scala `processRunResponseContent` / `processInitResponseContent`,
Container.scala); `record` builds the stored activation (ContainerProxy.constructWhiskActivation)
and `extended`, `summary` and `result_view` are the API's three ways of showing it
(WhiskActivation.scala `toExtendedJson`, `summaryAsJson`; ActivationResult.toExtendedJson).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import messages

SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, WHISK_ERROR = 0, 1, 2, 3
# HTTP status of a blocking answer by status code (Actions.scala L300-315).
HTTP_STATUS = {SUCCESS: 200, APPLICATION_ERROR: 502, DEVELOPER_ERROR: 502, WHISK_ERROR: 500}
# How much of an oversized response the error quotes.
TRUNCATED_CHARS = 1024


def new_activation_id() -> str:
    """32 lowercase hex characters (a UUID without dashes, ActivationId.scala)."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Outcome:
    """What became of one run: OpenWhisk's status code, the result object and the raw size."""

    status_code: int
    result: Any
    size: int | None = None
    timed_out: bool = False

    @property
    def success(self) -> bool:
        return self.status_code == SUCCESS


def _error(text: Any) -> dict[str, Any]:
    return {"error": text}


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


_NOT_JSON = object()


def classify_run(http_status: int, body: bytes, max_response_bytes: int) -> Outcome:
    """A /run answer: 200 with an object (`error` field: application error) or an array is a
    result; anything else is the developer's error; an answer over the limit is an application
    error quoting its start."""
    size = len(body.decode(errors="replace"))
    if size > max_response_bytes:
        truncated = body[:TRUNCATED_CHARS].decode(errors="replace")
        return Outcome(
            APPLICATION_ERROR, _error(messages.response_too_large(size, max_response_bytes, truncated)), size
        )
    parsed = _parse(body)
    if http_status == 200 and isinstance(parsed, dict):
        return Outcome(APPLICATION_ERROR if "error" in parsed else SUCCESS, parsed, size)
    if http_status == 200 and isinstance(parsed, list):
        return Outcome(SUCCESS, parsed, size)
    if isinstance(parsed, dict) and "error" in parsed:
        return Outcome(DEVELOPER_ERROR, _error(parsed["error"]), size)
    return Outcome(DEVELOPER_ERROR, _error(messages.not_json(body.decode(errors="replace"))), size)


def classify_init(http_status: int, body: bytes) -> Outcome | None:
    """None when /init succeeded, else the developer error it becomes."""
    if http_status == 200:
        return None
    parsed = _parse(body)
    if isinstance(parsed, dict) and "error" in parsed:
        return Outcome(DEVELOPER_ERROR, _error(parsed["error"]))
    return Outcome(DEVELOPER_ERROR, _error(messages.init_failed(body.decode(errors="replace"))))


def timed_out(limit_ms: int, during_init: bool) -> Outcome:
    return Outcome(DEVELOPER_ERROR, _error(messages.timed_out(limit_ms, during_init)), timed_out=True)


def exited(during_init: bool) -> Outcome:
    """The container closed the connection or died mid-call."""
    return Outcome(DEVELOPER_ERROR, _error(messages.ABNORMAL_INIT if during_init else messages.ABNORMAL_RUN))


def no_resources() -> Outcome:
    return Outcome(WHISK_ERROR, _error(messages.NO_RESOURCES))


def record(
    *,
    activation_id: str,
    namespace: str,
    action: Mapping[str, Any],
    outcome: Outcome,
    start_ms: int,
    end_ms: int,
    wait_ms: int,
    init_ms: int | None,
    logs: Sequence[str],
) -> dict[str, Any]:
    """The stored activation. `namespace` is the invoking one; `response.statusCode` is kept for
    summaries and dropped by `extended`."""
    annotations: list[dict[str, Any]] = [
        {"key": "path", "value": f"{action['namespace']}/{action['name']}"},
        {"key": "waitTime", "value": wait_ms},
        {"key": "kind", "value": action["exec"]["kind"]},
        {"key": "timeout", "value": outcome.timed_out},
        {"key": "limits", "value": action["limits"]},
    ]
    if init_ms is not None:
        annotations.append({"key": "initTime", "value": init_ms})
    response: dict[str, Any] = {"statusCode": outcome.status_code, "result": outcome.result}
    if outcome.size is not None:
        response["size"] = outcome.size
    return {
        "namespace": namespace, "name": action["name"], "subject": namespace,
        "activationId": activation_id, "start": start_ms, "end": end_ms, "duration": end_ms - start_ms,
        "response": response, "logs": list(logs), "version": action["version"], "publish": False,
        "annotations": annotations,
    }  # fmt: skip


def result_view(stored: Mapping[str, Any]) -> dict[str, Any]:
    """`response` as the API shows it: `{result, size?, success, status}`."""
    response = stored["response"]
    code = response["statusCode"]
    view = {"result": response["result"]}
    if "size" in response:
        view["size"] = response["size"]
    view.update(success=code == SUCCESS, status=messages.STATUS_TEXT[code])
    return view


def extended(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The full record (`GET /activations/{id}`, a blocking answer, `docs=true`)."""
    return {**stored, "response": result_view(stored)}


def summary(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A list item: no response and no logs, a top-level `statusCode`."""
    fields = (
        "namespace",
        "name",
        "version",
        "publish",
        "annotations",
        "activationId",
        "start",
        "end",
        "duration",
    )
    out = {k: stored[k] for k in fields if k in stored}
    out["statusCode"] = stored["response"]["statusCode"]
    return out
