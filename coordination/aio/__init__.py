"""asyncio: the same recipes for async services, waiting on the event loop.

    import coordination.aio
    async with await coordination.aio.connect("etcd://127.0.0.1:2379/shop") as coord:
        async with coord.lock("inventory/sku-42", timeout=5) as held:
            await stock.write(..., fencing_token=held.token)

A waiting task holds no thread: the backend's watches wake it on the loop. Requests
run in a small pool of threads shared by the coordinator's tasks (``workers``).
"""

from .client import AsyncCoordinator, connect
from .election import AsyncElection
from .lock import AsyncLock
from .multilock import AsyncMultiLock
from .queue import AsyncQueue, AsyncTask
from .recipes import AsyncCounter, AsyncRWLock, AsyncSemaphore, PermitRequest
from .shop import AsyncHold, AsyncInventory, AsyncStateRecord
from .worker import AsyncWorker

__all__ = [
    "AsyncCoordinator", "AsyncCounter", "AsyncElection", "AsyncHold", "AsyncInventory",
    "AsyncLock", "AsyncMultiLock", "AsyncQueue", "AsyncRWLock", "AsyncSemaphore",
    "AsyncStateRecord", "AsyncTask", "AsyncWorker", "PermitRequest", "connect",
]
