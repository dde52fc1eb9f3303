"""How /run calls an initialized action: with its models leased, directly or micro-batched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .action import LoadedAction
from .batching import Batcher, batch_policy
from .isolation import Activation
from .models import Model, ModelProvider, declared_models, wants_models
from .runner import DeadlineRunner


class Invocation:
    def __init__(
        self,
        action: LoadedAction,
        provider: ModelProvider,
        runner: DeadlineRunner,
        on_batch: Callable[[int], None],
    ) -> None:
        self.action = action
        self.name = action.name
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

    def __call__(self, value: Any, activation: Activation, timeout_s: float | None) -> Any:
        """The action's result for `value`; raises what the action raised, or DeadlineExceeded."""
        if self.batcher is not None:
            return self.batcher.submit(value, timeout_s)
        return self._runner.call(lambda: self._call_one(value, activation), timeout_s)

    def _call_one(self, value: Any, activation: Activation) -> Any:
        main = self.action.main
        with self._provider.leased(self.models) as models:
            activation.models = models
            try:
                return main(value, models) if self._pass_models else main(value)
            finally:
                activation.models = None

    def _call_batch(self, batch: list[Any]) -> list[Any]:
        main = self.action.main
        with self._provider.leased(self.models) as models:
            return main(batch, models) if self._pass_models else main(batch)
