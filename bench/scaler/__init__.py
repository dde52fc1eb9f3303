"""bench_scaler.py's parts: one module per section (`registry`, `overhead`, `coldstart`, `burst`
with `burst_report`), its settings (`config`) and the run with its summary (`bench`)."""
