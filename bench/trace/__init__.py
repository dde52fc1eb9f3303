"""bench_trace.py's sections: calibration on the real runtime, the simulated matrix over an Azure
Functions 2019 trace, a time-compressed live replay of a slice of it, and the report."""
