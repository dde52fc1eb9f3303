"""What bench_models.py measures, and the bounds its summary holds the figures to."""

from __future__ import annotations

from lib.report import logger

MODEL_NAME = "bert-base"
SEQ_LEN = 64
IN_PROCESS_BATCHES = (1, 4, 8, 16)
CONCURRENCY = (1, 2, 4, 8, 16, 32)
BERT_MAX_BATCH = 16
# 25 ms: on this 2-core machine 16 closed-loop clients need 10-20 ms to get a batch's answers and
# send again; with 5 ms the batches split into two alternating groups (mean batch 9.3 at c=16)
# and each request also waited for the other group's batch. The batcher stops waiting once
# every expected request is there, so the delay is rarely spent in full.
BERT_MAX_DELAY_MS = 25.0
SECTIONS = ("memory", "coldstart", "throughput")

TARGETS = {  # key: (comparison, bound, the section that measures it)
    "weight_copies_4": ("<=", 1.15, "memory"),
    "memory_ratio_4_vs_1": ("<=", 2.0, "memory"),
    "prewarm_init_ratio_vs_stock": ("<=", 0.1, "coldstart"),
    "throughput_ratio_vs_inprocess": (">=", 0.9, "throughput"),
    "batching_gain_bert": (">=", 1.25, "throughput"),
    "batching_gain_small": (">=", 2.5, "throughput"),
}
# Rounds of (served point, in-process forward right after it) behind throughput_ratio_vs_inprocess.
RATIO_ROUNDS = 3

log = logger("bench-models")
