"""palaestra on a Ray cluster (the ``[ray]`` extra): env servers and rollout workers as Ray actors.

Nothing here is imported by ``import palaestra`` or by a command run without ``--ray``.
"""
