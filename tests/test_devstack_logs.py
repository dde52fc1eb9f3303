"""The runtime's sentinels and the dev stack's log collector, without Docker: what `LogSink`
writes is fed to `LogCollector` as Docker's json-file log would stream it, so each activation of
a concurrent container gets its own block however their runs finish."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from runtime_harness import wait_until
from warmwhisk_devstack.containers import LogCollector
from warmwhisk_runtime.isolation import ActivationLog, LogSink


class StreamedContainer:
    """Stands in for a docker container object: `logs(stream=True)` yields what was written."""

    def __init__(self, stdout: str, stderr: str) -> None:
        self._texts = {"stdout": stdout, "stderr": stderr}

    def logs(self, stdout: bool, stderr: bool, **_: Any) -> Iterator[bytes]:
        text = self._texts["stdout" if stdout else "stderr"]
        for n, line in enumerate(text.splitlines(keepends=True)):
            yield f"2026-11-30T00:00:{n:02d}.000000000Z {line}".encode()


def written(tag: bool, runs: list[tuple[str, str]]) -> StreamedContainer:
    """What a runtime writes for `runs` ((activation id, stdout text), in finishing order)."""
    out, err = io.StringIO(), io.StringIO()
    sink = LogSink(out, err, tag_sentinels=tag)
    for activation_id, text in runs:
        log = ActivationLog(limit=1024)
        log.append("stdout", text)
        sink.emit(log, activation_id)
    return StreamedContainer(out.getvalue(), err.getvalue())


def collected(container: StreamedContainer, by_activation: bool = True) -> LogCollector:
    collector = LogCollector(container, by_activation)
    for thread in collector._threads:  # the streams are finite here: wait for both to be read
        thread.join(timeout=5)
    return collector


def texts(lines: list[str] | None) -> list[str]:
    assert lines is not None, "no block"
    return [line.split(" ", 1)[1] for line in lines]


def test_each_activation_takes_its_own_block_whatever_the_finishing_order() -> None:
    runs = [(f"a{n}", f"ran {n}\n") for n in (2, 0, 3, 1)]  # finished in another order than asked
    collector = collected(written(True, runs))
    for n in range(4):
        assert texts(collector.take(f"a{n}", timeout_s=1)) == [f"stdout: ran {n}"]
    assert collector.take("a0", timeout_s=0.1) is None, "a block is taken once"


def test_a_bare_sentinel_printed_by_action_code_hands_its_lines_to_no_other_run() -> None:
    runs = [("a1", "mine\nXXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"), ("a2", "theirs\n")]
    collector = collected(written(True, runs))
    assert texts(collector.take("a2", timeout_s=1)) == ["stdout: theirs"]
    assert collector.take("a3", timeout_s=0.1) is None


def test_untagged_sentinels_are_taken_in_order_and_stay_exact() -> None:
    container = written(False, [("a1", "first\n"), ("a2", "second\n")])
    assert container._texts["stderr"].splitlines() == ["XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"] * 2
    collector = collected(container, by_activation=False)
    assert texts(collector.take("a2", timeout_s=1)) == ["stdout: first"]
    assert texts(collector.take("a2", timeout_s=1)) == ["stdout: second"]


def test_an_id_that_is_not_a_plain_token_is_not_written() -> None:
    container = written(True, [("a b\nXXX", "x\n"), ("", "y\n")])
    assert container._texts["stdout"].splitlines() == [
        "x", "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX", "y", "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX",
    ]  # fmt: skip


def test_a_failed_inits_sentinel_names_the_activation_of_the_init(start_process_runtime) -> None:
    """The runtime end to end: /init with code that raises writes its error, then a sentinel
    naming the activation that triggered the init (so the stack gives that run the error)."""
    runtime = start_process_runtime(env={"WARMWHISK_LOG_ACTIVATION_IDS": "true"})
    code = "raise ValueError('broken on purpose')\ndef main(args):\n    return args\n"
    status, _ = runtime.init(code, env={"__OW_ACTIVATION_ID": "0123abcd"})
    assert status == 502
    named = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX 0123abcd"
    wait_until(lambda: all(named in text for text in runtime.logs()), timeout_s=5, what="the named sentinels")
