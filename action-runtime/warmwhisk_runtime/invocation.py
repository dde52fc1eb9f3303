"""Loading an action (`ActionLoader`), and how /run calls it (`Invocation`): with its models
leased, directly or micro-batched."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from warmwhisk_protocol.forwarding import ActionSpec, key_digest

from .action import LoadedAction, import_action, unpack
from .batching import Batcher, batch_policy
from .config import RuntimeConfig
from .contract import ENV_PREFIX
from .isolation import Activation, current_action_env, current_activation, quiet_activation
from .models import Model, ModelProvider, declared_models, wants_models
from .runner import DeadlineRunner, Pending


class Invocation:
    def __init__(
        self,
        action: LoadedAction,
        provider: ModelProvider,
        runner: DeadlineRunner,
        on_batch: Callable[[int], None],
        env: dict[str, str] | None = None,
    ) -> None:
        self.action = action
        self.name = action.name
        # Its init parameters, when they are its own rather than the process's (host mode).
        self.env = env
        self.models: dict[str, Model] = declared_models(action.namespace)
        self._provider = provider
        self._runner = runner
        self._pass_models = wants_models(action.main)
        policy = batch_policy(action.main)
        self.batcher = Batcher(self._call_batch, policy, on_batch) if policy else None

    def load_models(self) -> None:
        """Load every declared model now (at /init, so loading counts as init time)."""
        with self._provider.leased(self.models):
            pass

    def start(self, value: Any, activation: Activation, timeout_s: float | None) -> Pending:
        """The action's call for `value`, under way: on an activation thread, or in a batch."""
        if self.batcher is not None:
            return self.batcher.enqueue(value, timeout_s)
        return self._runner.start(lambda: self._call_one(value, activation))

    def _call_one(self, value: Any, activation: Activation) -> Any:
        # Plain try/finally rather than `with action_env(...), leased(...)`: this runs once per
        # activation, and two generator-based context managers cost as much as the rest of it.
        main = self.action.main
        models = self._provider.lease(self.models)
        token = None if self.env is None else current_action_env.set(self.env)
        activation.models = models
        try:
            return main(value, models) if self._pass_models else main(value)
        finally:
            activation.models = None
            if token is not None:
                current_action_env.reset(token)
            models.release()

    def _call_batch(self, batch: list[Any]) -> list[Any]:
        main = self.action.main
        with action_env(self.env), self._provider.leased(self.models) as models:
            return main(batch, models) if self._pass_models else main(batch)


@contextlib.contextmanager
def action_env(env: dict[str, str] | None) -> Iterator[None]:
    """Run the block as the action whose init parameters are `env` (None: the process's)."""
    token = current_action_env.set(env)
    try:
        yield
    finally:
        current_action_env.reset(token)


class ActionLoader:
    """Turns an action's code into an `Invocation`: unpacks and imports it, loads its models.

    Direct mode loads one action, at /init, into the process's working directory; host mode
    loads one per registration, each into a folder and module of its own (several share the
    process, and the working directory stays).
    """

    def __init__(self, config: RuntimeConfig, provider: ModelProvider, runner: DeadlineRunner,
                 on_batch: Callable[[int], None]) -> None:  # fmt: skip
        self._config = config
        self._provider = provider
        self._runner = runner
        self._on_batch = on_batch

    def load_initialized(self, fields: dict[str, Any]) -> Invocation:
        """The action of a direct-mode /init (`contract.init_fields`)."""
        config = self._config
        source = unpack(fields, config.handler, config.action_dir, config.max_zip_bytes)
        return self._ready(import_action(source, fields["name"]))

    def load_registered(self, key: str, spec: ActionSpec) -> Invocation:
        """A registered action on a model host (`key` names it; its digest names its folder). Its
        init parameters are its own: visible while its code loads and to its activations only."""
        digest = key_digest(key) or "action"
        folder = None if self._config.action_dir is None else f"{self._config.action_dir}/{digest}"
        fields = {"name": spec.name, "main": spec.main, "code": spec.code, "binary": spec.binary}
        # Its identity (`__OW_ACTION_NAME`, ...) is context its code sees while it loads, as at an
        # /init; each run brings its own. The rest are its init parameters.
        context = {k: v for k, v in spec.env.items() if k.startswith(ENV_PREFIX)}
        env = {k: v for k, v in spec.env.items() if k not in context}
        token = current_activation.set(quiet_activation(context))
        try:
            with action_env(env):
                source = unpack(fields, None, folder, self._config.max_zip_bytes)
                action = import_action(source, key, module_name=f"main__{digest}", chdir=False)
                return self._ready(action, env)
        finally:
            current_activation.reset(token)

    def _ready(self, action: LoadedAction, env: dict[str, str] | None = None) -> Invocation:
        invocation = Invocation(action, self._provider, self._runner, self._on_batch, env)
        invocation.load_models()
        return invocation
