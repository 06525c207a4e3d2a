"""Typed errors of the public API.

Every error the library raises is a subclass of :class:`CoordinationError`; no kazoo,
grpc or protobuf exception leaves the public API.
"""

from __future__ import annotations


class CoordinationError(Exception):
    """Base class of every error raised by :mod:`coordination`."""


# --- configuration and input -------------------------------------------------------------


class ConfigError(CoordinationError, ValueError):
    """The configuration (URL, TOML file, environment) is missing or invalid."""


class InvalidName(CoordinationError, ValueError):
    """A lock/queue name breaks the naming rules (see :mod:`coordination.names`)."""


class InvalidArgument(CoordinationError, ValueError):
    """An argument has a bad value (negative timeout, priority out of range, ...)."""


class InvalidPayload(CoordinationError, TypeError):
    """A payload is neither ``bytes`` nor ``str``."""


class PayloadTooLarge(InvalidArgument):
    """A payload exceeds the backend's safe request size; nothing was sent."""


# --- connection and session --------------------------------------------------------------


class BackendUnavailable(CoordinationError, ConnectionError):
    """The servers could not be reached (or lost quorum) within the allowed time."""


class TLSError(CoordinationError, ConnectionError):
    """A TLS connection could not be made, and the message says why: the server's
    certificate is not signed by ``ca``, or not issued to the name we connect by (see
    ``server_name``), the server refused our client certificate, or one side speaks
    plaintext to the other's TLS."""


class AuthenticationFailed(CoordinationError, PermissionError):
    """The cluster refused our credentials (unknown user or wrong password)."""


class PermissionDenied(CoordinationError, PermissionError):
    """Our identity may not do this: the message names the operation and the key or path.
    On ZooKeeper, nodes made by another identity with a private ACL; on etcd, a key
    outside the prefixes our user's roles grant."""


class ClientClosed(CoordinationError):
    """The coordinator was closed; create a new one with :func:`coordination.connect`."""


class SessionLost(CoordinationError):
    """The ZooKeeper session expired or the etcd lease was lost (or is presumed lost)."""


# --- locks -------------------------------------------------------------------------------


class LockError(CoordinationError):
    """Base class of lock errors."""


class LockTimeout(LockError, TimeoutError):
    """The lock was not acquired within the timeout (raised by the ``with`` form)."""


class NotHeld(LockError):
    """``release()`` was called on a lock this object does not hold."""


class LockLost(LockError, SessionLost):
    """The lock was held but the session behind it is lost; others may hold it now."""


# --- queues ------------------------------------------------------------------------------


class QueueError(CoordinationError):
    """Base class of queue errors."""


class ClaimLost(QueueError):
    """The claim on a task is gone (session lost, or the task was handed to another
    worker); the ack/nack changed nothing."""


class AlreadyAcknowledged(QueueError):
    """``ack()``/``nack()`` was called on a task that was already settled by this worker."""


class WrongQueue(QueueError):
    """A task was settled through a queue it does not belong to."""


class TaskNotFound(QueueError, KeyError):
    """No task with that id (e.g. ``requeue_dead`` of an id that is not dead)."""


class AlreadyHeld(LockError):
    """``acquire()`` on a lock object that already holds the lock (it is not reentrant;
    use one lock object per holder)."""


class UncertainOutcome(CoordinationError):
    """A write's reply was lost and the retry could not tell whether it was applied
    (it was applied at most once). Read the current state to reconcile."""


# --- counters, semaphores ----------------------------------------------------------------


class BoundExceeded(CoordinationError, ValueError):
    """A counter update would leave its ``[min, max]`` bounds; nothing was changed."""


class PermitsMismatch(InvalidArgument):
    """A semaphore was opened with another ``permits`` than the one its name was first
    used with (every client of one semaphore must agree); nothing was changed."""


# --- state records -----------------------------------------------------------------------


class Conflict(CoordinationError):
    """A record was not in the state the write expected (or did not exist, or existed
    already); nothing was changed."""


class InvalidTransition(CoordinationError, ValueError):
    """A transition that the record's declared transitions do not allow from its
    current state; nothing was changed."""


# --- inventory ---------------------------------------------------------------------------


class OutOfStock(CoordinationError):
    """A reservation that some of its lines cannot get; nothing was reserved.
    ``short`` maps each such SKU to ``(units wanted, units available)``."""

    def __init__(self, short: dict[str, tuple[int, int]]) -> None:
        self.short = short
        lines = ", ".join(f"{sku}: {want} wanted, {left} available"
                          for sku, (want, left) in sorted(short.items()))
        super().__init__(f"out of stock ({lines})")


class HoldExpired(CoordinationError):
    """A hold that expired (its stock went back to available) before it was confirmed
    or released; nothing was changed."""
