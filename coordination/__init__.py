"""coordination: distributed locks, work queues, counters, read-write locks, semaphores
and leader election on ZooKeeper and etcd.

    import coordination
    with coordination.connect("etcd://127.0.0.1:2379/shop") as coord:
        with coord.lock("inventory/sku-42", timeout=5) as lock:
            stock.write(..., fencing_token=lock.token)
"""

from . import errors
from .client import Coordinator, connect
from .config import Config
from .events import Event
from .recipes.counter import Counter
from .recipes.election import Election, Observer
from .recipes.inventory import Hold, Inventory
from .recipes.lock import Lock
from .recipes.multilock import MultiLock
from .recipes.queue import Queue, Retry, Task, Worker
from .recipes.rwlock import ReadLock, RWLock, WriteLock
from .recipes.semaphore import Permit, Semaphore
from .recipes.statemachine import Snapshot, StateRecord
from .session import SessionState

__all__ = [
    "Config", "Coordinator", "Counter", "Election", "Event", "Hold", "Inventory", "Lock",
    "MultiLock",
    "Observer", "Permit",
    "Queue",
    "RWLock", "ReadLock", "Retry", "Semaphore", "SessionState", "Snapshot", "StateRecord",
    "Task", "Worker", "WriteLock",
    "connect", "errors",
]
__version__ = "0.1.0"
