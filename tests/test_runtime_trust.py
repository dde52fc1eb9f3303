"""What action code can see of other activations and other actions, through the real runtime:
threads it starts see no activation's context (never the /init activation's API key, nor through
`os.environb`); on a model host, each action sees its own init parameters and never another's."""

from __future__ import annotations

import pytest

from routed_harness import RoutedStack
from runtime_harness import wait_until

THREAD_PEEKS = """
import os, threading

seen = {}
started = threading.Event()

def peek():
    started.wait(10)
    seen["environ"] = os.environ.get("__OW_API_KEY")
    seen["environb"] = os.environb.get(b"__OW_API_KEY")
    seen["activation"] = os.environ.get("__OW_ACTIVATION_ID")

threading.Thread(target=peek, daemon=True).start()
IMPORT_TIME_KEY = os.environ.get("__OW_API_KEY")  # the /init activation's, while the code loads

def main(args):
    started.set()
    while "activation" not in seen:
        pass
    return {"thread": seen, "own": os.environ.get("__OW_API_KEY"), "at_import": IMPORT_TIME_KEY}
"""


def test_threads_the_action_starts_see_no_activations_context(start_process_runtime):
    runtime = start_process_runtime(env={"__OW_ALLOW_CONCURRENT": "true"})
    status, _ = runtime.init(THREAD_PEEKS, env={"__OW_API_KEY": "init-activation-key", "GREETING": "hi"})
    assert status == 200
    status, body = runtime.run({}, api_key="run-key", activation_id="a-1")
    assert status == 200, body
    assert body["thread"] == {"environ": None, "environb": None, "activation": None}
    assert body["own"] == "run-key" and body["at_import"] == "init-activation-key"


SHOW_PARAMETERS = """
import os

def main(args):
    return {"greeting": os.environ.get("GREETING"), "secret": os.environ.get("SECRET"),
            "all": sorted(k for k in os.environ if k in ("GREETING", "SECRET"))}
"""


@pytest.mark.slow
def test_on_a_model_host_each_action_sees_its_own_init_parameters_only(start_process_runtime, redis_server,
                                                                       tmp_path):  # fmt: skip
    stack = RoutedStack(start_process_runtime, redis_server, tmp_path)
    routers = {}
    parameters = {"one": {"GREETING": "from one"}, "two": {"GREETING": "from two", "SECRET": "two's"}}
    for name, params in parameters.items():
        routers[name] = stack.router()
        assert routers[name].init(SHOW_PARAMETERS, env=stack.init_env(name=name, **params))[0] == 200
    registry = stack.registry()
    keys = {key.split("/")[2].split("@")[0]: key for key in registry.registered_actions()}
    stack.host(",".join(sorted(keys.values())), "h-shared")  # one host, both actions
    wait_until(lambda: [h.state for h in registry.hosts()] == ["warm"], timeout_s=20, what="a warm host")
    assert routers["one"].run({})[1] == {"greeting": "from one", "secret": None, "all": ["GREETING"]}
    expected = {"greeting": "from two", "secret": "two's", "all": ["GREETING", "SECRET"]}
    assert routers["two"].run({})[1] == expected
