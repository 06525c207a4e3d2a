"""The lab: everything that proves the library rather than being it.

Local real clusters (:class:`~coordination.lab.cluster.LocalCluster`, with kill, pause
and isolate), secured clusters and their throwaway CA, the fault tools of the chaos
suite (proxy, nemesis, scenarios, workloads, history checkers), the soak runner
``python -m coordination.lab.chaos``, the flash-sale demo, and the pytest plugin
(:mod:`coordination.lab.pytest_plugin`) that lets a service test itself against real
clusters. The core library never imports from here.
"""

from .cluster import BACKENDS, LocalCluster

__all__ = ["BACKENDS", "LocalCluster"]
