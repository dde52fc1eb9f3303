"""bench_runtime.py's parts: the floor apps (`floors`) and the measured rounds, table and summary
(`overhead`)."""
