"""The dev stack through the real `openwhisk` npm client: `devstack_npm_client.test.mjs`, run by
node's built-in test runner against a stack started here (namespaces guest and other).

The client comes from `package.json` / `package-lock.json` beside this file (`openwhisk` 3.21.9,
exact): `npm ci` installs it into `tests/node_modules` when that is missing or stale. Node 18 or
later (`node --test`) and npm come with `make setup`. A failing node test fails this one with
node's own report; the TAP summary must show every node test passed and none skipped.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack_harness import RunningStack
from warmwhisk_invoker_patch import Limits

pytestmark = pytest.mark.docker

TESTS = Path(__file__).resolve().parent
NODE_TESTS = TESTS / "devstack_npm_client.test.mjs"
NODE_MODULES = TESTS / "node_modules"
CLIENT_VERSION = "3.21.9"
# OpenWhisk's own maximum of `limits.logs` (application.conf: whisk.log-limit.max = 10 m).
LOG_LIMIT_MAX_MB = 10
# The node tests in the .mjs file: the TAP summary must count exactly these.
NODE_TEST_COUNT = 16


def _require_node() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed (`make setup` installs them with apt)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(re.match(r"v(\d+)", version.strip()).group(1))  # type: ignore[union-attr]
    if major < 18:
        pytest.fail(f"node {version.strip()} has no `node --test`; 18 or later is needed")
    return node, npm


def _installed_version() -> str | None:
    try:
        return str(json.loads((NODE_MODULES / "openwhisk" / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _install(npm: str) -> None:
    """`npm ci` unless node_modules already holds what the lock file names (npm's own record of
    an install, node_modules/.package-lock.json, is at least as new as the lock file)."""
    pinned = json.loads((TESTS / "package.json").read_text())["dependencies"]["openwhisk"]
    assert pinned == CLIENT_VERSION, f"package.json pins openwhisk {pinned}, not exactly {CLIENT_VERSION}"
    # One install at a time on this machine (two sessions may share the checkout).
    with open("/tmp/warmwhisk-npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = NODE_MODULES / ".package-lock.json"
        fresh = record.exists() and record.stat().st_mtime >= (TESTS / "package-lock.json").stat().st_mtime
        if fresh and _installed_version() == CLIENT_VERSION:
            return
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=TESTS, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    assert _installed_version() == CLIENT_VERSION


def test_the_npm_client_against_the_stack(devstack: RunningStack, tmp_path: Path) -> None:
    node, npm = _require_node()
    _install(npm)
    maxima = Limits()
    limits = {
        "timeout": maxima.time_max_s * 1000, "memory": maxima.memory_max_mb,
        "logs": LOG_LIMIT_MAX_MB, "concurrency": maxima.concurrency_max,
    }  # fmt: skip
    env = {
        **os.environ,
        "WSK_APIHOST": devstack.api_host,
        "WSK_AUTH": devstack.key("guest"),
        "WSK_AUTH_OTHER": devstack.key("other"),
        "WSK_LIMITS": json.dumps(limits),
        "NO_COLOR": "1",
    }
    env.pop("__OW_API_HOST", None)  # the client would prefer nothing else, but be sure
    tap = tmp_path / "node-tests.tap"
    command = [
        node, "--test", "--test-reporter=spec", "--test-reporter-destination=stdout",
        "--test-reporter=tap", f"--test-reporter-destination={tap}", str(NODE_TESTS),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=TESTS, env=env, capture_output=True, text=True, timeout=240)
    report = f"{done.stdout}\n{done.stderr}"
    if done.returncode != 0:
        pytest.fail(f"node --test failed ({done.returncode}):\n{report}", pytrace=False)
    summary = dict(re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", tap.read_text(), re.M))
    assert summary == {
        "tests": str(NODE_TEST_COUNT), "pass": str(NODE_TEST_COUNT),
        "fail": "0", "cancelled": "0", "skipped": "0", "todo": "0",
    }, report  # fmt: skip
