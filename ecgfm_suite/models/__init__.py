"""Models layer: the Encoder protocol, the ModelSpec registry, one module per family."""
