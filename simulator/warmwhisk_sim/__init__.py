"""Replaying workloads against the scaler's own policies: a deterministic simulator, the Azure
Functions 2019 trace reader and synthetic workloads. A tool beside the scaler, not part of the service."""
