"""The idle heap trimmer: freed C heap goes back to the kernel only once no activation runs."""

import threading
import time

from runtime_harness import wait_until
from warmwhisk_runtime.procmem import IdleHeapTrimmer


def test_trims_only_once_the_last_running_activation_has_ended():
    trimmer = IdleHeapTrimmer(idle_for_s=0.01, min_interval_s=0.01)
    trimmer.begin()
    trimmer.begin()
    trimmer.end()
    time.sleep(0.1)
    assert trimmer.trims == 0 and trimmer.running == 1
    trimmer.end()
    wait_until(lambda: trimmer.trims == 1, timeout_s=5, what="a trim after going idle")
    assert trimmer.running == 0


def test_back_to_back_activations_do_not_trim_until_the_gap_is_long_enough():
    trimmer = IdleHeapTrimmer(idle_for_s=0.2, min_interval_s=0.01)
    for _ in range(40):  # idle for ~5 ms between activations, well under idle_for_s
        trimmer.begin()
        trimmer.end()
        time.sleep(0.005)
    assert trimmer.trims == 0
    wait_until(lambda: trimmer.trims == 1, timeout_s=5, what="a trim once idle for 0.2 s")


def test_bursts_of_short_activations_trim_at_most_once_per_interval():
    trimmer = IdleHeapTrimmer(idle_for_s=0.0, min_interval_s=0.5)

    def activations() -> None:
        for _ in range(200):
            trimmer.begin()
            trimmer.end()

    threads = [threading.Thread(target=activations) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trimmer.running == 0
    wait_until(lambda: trimmer.trims >= 1, timeout_s=5, what="a trim after the burst")
    assert trimmer.trims <= 2


ALLOCATING_ACTION = """
def main(args):
    blocks = [bytearray(256 * 1024) for _ in range(64)]  # 16 MB, freed when main returns
    return {"allocated": sum(len(b) for b in blocks)}
"""


def test_the_runtime_trims_once_its_activations_are_done(start_process_runtime):
    runtime = start_process_runtime()
    assert runtime.init(ALLOCATING_ACTION)[0] == 200
    before = runtime.health()["heap_trims"]
    status, body = runtime.run({})
    assert status == 200 and body == {"allocated": 16 * 1024 * 1024}
    wait_until(lambda: runtime.health()["heap_trims"] > before, timeout_s=10, what="a trim after the run")
