"""The API for warmwhisk actions: declare models, optionally batch.

    import warmwhisk

    encoder = warmwhisk.Model("/models/minilm")          # loaded at /init, shared, resident

    @warmwhisk.batch(max_batch_size=16, max_batch_delay_ms=5)   # optional
    def main(batch, models):
        ...

A plain OpenWhisk action (`def main(args)`) needs none of this.
"""

from warmwhisk_runtime.batching import BatchPolicy, batch, run_valid
from warmwhisk_runtime.models import Model
from warmwhisk_runtime.store import ModelError

__all__ = ["BatchPolicy", "Model", "ModelError", "batch", "run_valid"]
