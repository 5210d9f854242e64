"""The next experiments: acquisition functions, candidate mixtures, suggestions and the closed loop."""
