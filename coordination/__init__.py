"""coordination: distributed locks and work queues on ZooKeeper and etcd.

    import coordination
    with coordination.connect("etcd://127.0.0.1:2379/shop") as coord:
        with coord.lock("inventory/sku-42", timeout=5) as lock:
            stock.write(..., fencing_token=lock.token)
"""

from . import errors
from .client import Coordinator, connect
from .config import Config
from .recipes.lock import Lock
from .recipes.queue import Queue, Task
from .session import SessionState

__all__ = ["Config", "Coordinator", "Lock", "Queue", "SessionState", "Task", "connect", "errors"]
__version__ = "0.1.0"
