"""The engine: settings, planning, sharding, the worker pool and the run session that drive the layers.

``data`` → ``models`` → ``embeddings`` → ``probes`` + ``metrics`` → ``results`` → ``analysis`` →
``report`` and ``gate``: each layer imports only those before it; the engine imports them all and
nothing below it imports the engine.
"""
