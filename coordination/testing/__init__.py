"""Tools to prove the toolkit under faults: a fault-injecting TCP proxy, fenced and
unfenced resources, workloads that record histories, a nemesis, and checkers.

Used by ``tests/chaos`` and by the soak runner ``python -m coordination.chaos``.
"""
