"""warmwhisk scaler service: registry of warm model hosts, slot routing, and the hybrid scaling policy."""
