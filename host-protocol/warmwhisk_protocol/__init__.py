"""The contract between the warmwhisk action runtime and the scaler: the Redis key schema and
registry (with an in-memory twin), host records, the model host's launch contract, and the
forwarding protocol between routed containers and model hosts."""
