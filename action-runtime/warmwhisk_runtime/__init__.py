"""warmwhisk action runtime: OpenWhisk's action-container contract with concurrent activations."""
