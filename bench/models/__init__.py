"""bench_models.py's parts: its settings (`config`), the actions it sends (`actions`), the run's
state and set-up (`context`), one module per section (`memory`, `coldstart`, `throughput` with
`inprocess` and `tables`), and the output (`plot`, `summary`); `bench.run` runs them in order."""
