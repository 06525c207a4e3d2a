"""Stock with reservations: a cart reserves all its lines or none, and a hold that is
neither confirmed nor released in time gives its stock back by itself.

Keys under the inventory's root::

    s/SKU                  "AVAILABLE,RESERVED,SOLD" of one SKU (they add up to its stock)
    h/HOLD                 a hold: its lines, expiry, state (held, confirmed, released,
                           expired) and the id of the write that set that state
    e/SECOND/EXPIRES.HOLD  the live holds, by expiry (ns since the epoch)
    x/SECOND/SETTLED.HOLD  the settled holds, by settling time, to forget them later

``reserve`` reads the lines' SKUs and commits, with a check on every SKU's version, the
moves of each line from available to reserved, the hold and its expiry leaf: all lines
or none, in one commit, without a lock. ``confirm`` moves a hold's lines from reserved to
sold, ``release`` and expiry back to available, each in one commit that checks the hold
is still ``held`` (its version): a hold ends exactly once, whoever gets there first.
Expiry needs no particular process alive: every client sweeps the expired holds before
it reserves or reads levels (and ``sweep()`` does it on demand), judging expiry by its
own clock. Lost replies: each write carries an id, read back from the hold
(``UncertainOutcome`` if the servers stay unreachable for that read).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from urllib.parse import quote

from ..backends.base import Backend
from ..backends.kv import (
    Absent,
    Check,
    Create,
    Delete,
    Entry,
    Op,
    OutcomeUnknown,
    Present,
    Update,
    Version,
    replace,
)
from ..errors import (
    BackendUnavailable,
    Conflict,
    HoldExpired,
    InvalidArgument,
    OutOfStock,
    UncertainOutcome,
)
from ..names import validate_name
from .combining import Combiner, Reservation

KIND = "inventory"
#: Seconds a settled hold is remembered (a late confirm then says what became of it).
KEEP_SETTLED = 600.0
_SWEEP_BATCH = 50
_SWEEP_EVERY = 0.5  # seconds between two opportunistic sweeps of one Inventory object

Levels = tuple[int, int, int]  # available, reserved, sold


def _levels(entry: Entry | None) -> Levels:
    if entry is None:
        return 0, 0, 0
    available, reserved, sold = (int(part) for part in entry.value.decode().split(","))
    return available, reserved, sold


def _encode(levels: Levels) -> bytes:
    return ",".join(str(n) for n in levels).encode()


class Hold:
    """A reservation of ``lines`` ({sku: units}) until ``expires_at`` (``time.time()``
    seconds); ``token`` is the stamp of the commit that made it."""

    def __init__(self, inventory: Inventory, hold_id: str, lines: dict[str, int],
                 expires_at: float, token: int) -> None:
        self.inventory, self.id, self.lines = inventory, hold_id, lines
        self.expires_at, self.token = expires_at, token

    def __repr__(self) -> str:
        return f"<Hold {self.id} {self.lines}>"

    def confirm(self) -> None:
        """Make the hold a sale. ``HoldExpired`` if it expired first (its stock went
        back), ``Conflict`` if it was released."""
        self.inventory.settle(self.id, "confirmed")

    def release(self) -> None:
        """Give the stock back. ``HoldExpired`` if it expired first (the stock went back
        then), ``Conflict`` if it was confirmed."""
        self.inventory.settle(self.id, "released")


class Inventory:
    """The stock of a set of SKUs; the same name is the same inventory in every process."""

    def __init__(self, backend: Backend, name: str) -> None:
        self.name = validate_name(name, "inventory name")
        self._kv = backend.kv
        self._root = backend.kv.root(KIND, name)
        self._last_sweep = -1e9
        self._combiner = Combiner(self._serve)

    def __repr__(self) -> str:
        return f"<Inventory {self.name!r}>"

    def _sku(self, sku: str) -> str:
        if not isinstance(sku, str) or not sku:
            raise InvalidArgument(f"a SKU must be a non-empty str, got {sku!r}")
        return f"{self._root}/s/{quote(sku, safe='')}"

    def _hold(self, hold_id: str) -> str:
        return f"{self._root}/h/{hold_id}"

    def _leaf(self, index: str, ns: int, hold_id: str) -> Create:
        """The leaf of ``hold_id`` at time ``ns`` in index ``e`` or ``x``: in buckets of
        a second, so that a listing reads one bucket (etcd would visit every key deleted
        in a flat index since its last compaction)."""
        return Create(f"{self._root}/{index}/{ns // 10**9:011d}/{ns:020d}.{hold_id}", depth=2)

    # --- reads ---------------------------------------------------------------------------

    def levels(self, sku: str) -> Levels:
        """``(available, reserved, sold)`` of ``sku`` after expired holds are returned;
        they add up to the stock ``set`` gave it."""
        self._sweep_if_due()
        key = self._sku(sku)
        self._kv.sync(key)
        return _levels(self._kv.get(key))

    def available(self, sku: str) -> int:
        return self.levels(sku)[0]

    def reserved(self, sku: str) -> int:
        return self.levels(sku)[1]

    def sold(self, sku: str) -> int:
        return self.levels(sku)[2]

    def hold_state(self, hold_id: str) -> str | None:
        """What became of hold ``hold_id``, after expired holds are returned:
        ``"held"``, ``"confirmed"``, ``"released"`` or ``"expired"``; None if it is not
        known (never made, or forgotten ``KEEP_SETTLED`` seconds after it ended). For a
        process that lost track of a hold, e.g. after ``UncertainOutcome``."""
        if not isinstance(hold_id, str) or not hold_id.isalnum():
            raise InvalidArgument(f"a hold id is the alphanumeric Hold.id, got {hold_id!r}")
        self._sweep_if_due()
        key = self._hold(hold_id)
        self._kv.sync(key)
        entry = self._kv.get(key)
        return None if entry is None else str(json.loads(entry.value)["state"])

    # --- writes --------------------------------------------------------------------------

    def set(self, stock: Mapping[str, int]) -> None:
        """Give each SKU this stock in all (available + reserved + sold), in one commit;
        ``InvalidArgument`` if a SKU has more reserved and sold than that."""
        wanted = self._check_lines(stock, minimum=0)
        while True:
            keys = [self._sku(sku) for sku in wanted]
            entries = self._kv.get_many(keys)
            checks: list[Check] = []
            ops: list[Op] = []
            for (sku, total), key, entry in zip(wanted.items(), keys, entries):
                _available, reserved, sold = _levels(entry)
                if reserved + sold > total:
                    raise InvalidArgument(f"{sku!r}: {reserved} reserved and {sold} sold "
                                          f"exceed a stock of {total}")
                value = _encode((total - reserved - sold, reserved, sold))
                check, op = replace(key, entry, value)
                checks.append(check)
                ops.append(op)
            try:
                if self._kv.commit(checks, ops) is not None:
                    return
            except OutcomeUnknown:
                continue  # setting again to the same stock is harmless

    def reserve(self, lines: Mapping[str, int], ttl: float = 900.0) -> Hold:
        """Reserve every line ({sku: units}) or none, for ``ttl`` seconds. ``OutOfStock``
        (naming the short lines) if one cannot be served; nothing changed then. The
        reserves that threads make at once through this object share commits."""
        wanted = self._check_lines(lines, minimum=1)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < 10**7:
            raise InvalidArgument(f"ttl must be a number of seconds > 0, got {ttl!r}")
        self._sweep_if_due()
        return self._combiner.reserve(Reservation(wanted, float(ttl)))

    def _serve(self, batch: list[Reservation]) -> None:
        """Serve ``batch`` in its order, in one commit: each reservation gets its hold,
        or ``OutOfStock`` if its lines do not fit in what the earlier ones left."""
        synced = False
        while batch:
            skus = sorted({sku for wanted in batch for sku in wanted.lines})
            keys = [self._sku(sku) for sku in skus]
            entries = dict(zip(skus, self._kv.get_many(keys)))
            left = {sku: _levels(entry)[0] for sku, entry in entries.items()}
            fits, short = [], []
            for wanted in batch:
                missing = {sku: (units, left[sku]) for sku, units in wanted.lines.items()
                           if left[sku] < units}
                if missing:
                    short.append((wanted, missing))
                    continue
                fits.append(wanted)
                for sku, units in wanted.lines.items():
                    left[sku] -= units
            if short and not synced and self._kv.sync(keys[0]):  # never refuse on a stale read
                synced = True
                continue
            for wanted, missing in short:
                wanted.finish(error=OutOfStock(missing))
            batch = fits
            if batch and self._commit_holds(batch, entries, left):
                return
            synced = False  # a SKU changed under us: read again

    def _commit_holds(self, batch: list[Reservation], entries: dict[str, Entry | None],
                      left: dict[str, int]) -> bool:
        """Commit the holds of ``batch`` with the SKUs as read (``entries``) and what
        stays available of each (``left``); False if a SKU changed meanwhile."""
        touched = sorted({sku for wanted in batch for sku in wanted.lines})
        checks: list[Check] = []
        ops: list[Op] = []
        for sku in touched:
            available, reserved, sold = _levels(entries[sku])
            checks.append(Version(self._sku(sku), entries[sku].version))  # type: ignore[union-attr]
            ops.append(Update(self._sku(sku), _encode(
                (left[sku], reserved + available - left[sku], sold))))
        now = time.time_ns()
        for wanted in batch:
            wanted.id = secrets.token_hex(8)
            wanted.expires = now + int(wanted.ttl * 1e9)
            record = {"lines": wanted.lines, "expires": wanted.expires, "state": "held"}
            checks.append(Absent(self._hold(wanted.id)))
            ops += [Create(self._hold(wanted.id), json.dumps(record).encode()),
                    self._leaf("e", wanted.expires, wanted.id)]
        try:
            stamp = self._kv.commit(checks, ops)
        except OutcomeUnknown:  # all or none applied: the first hold says which
            held = self._read_back(self._hold(batch[0].id), "reserve")
            stamp = held.stamp if held is not None else None  # the ids are ours alone
        if stamp is None:
            return False
        for wanted in batch:
            wanted.finish(Hold(self, wanted.id, wanted.lines, wanted.expires / 1e9, stamp))
        return True

    def settle(self, hold_id: str, state: str) -> None:
        """End hold ``hold_id`` as ``confirmed`` (sold), ``released`` or ``expired``
        (back to available); see ``Hold``. A hold past its expiry (by this client's
        clock) that nobody swept yet is expired instead: ``HoldExpired``."""
        if state not in ("confirmed", "released", "expired"):
            raise InvalidArgument(f"a hold ends confirmed, released or expired, not {state!r}")
        key = self._hold(hold_id)
        while True:
            entry = self._kv.get(key)
            if entry is None:
                raise HoldExpired(f"hold {hold_id} is not known (settled long ago, or never made)")
            record = json.loads(entry.value)
            if record["state"] != "held":
                if record["state"] == "expired" and state != "expired":
                    raise HoldExpired(f"hold {hold_id} expired; its stock went back")
                raise Conflict(f"hold {hold_id} was {record['state']} already")
            now = time.time_ns()
            ending = "expired" if record["expires"] <= now else state
            write_id = secrets.token_hex(6)
            lines: dict[str, int] = record["lines"]
            skus = [self._sku(sku) for sku in lines]
            entries = self._kv.get_many(skus)
            checks: list[Check] = [Version(key, entry.version)]
            ops: list[Op] = []
            for (units, sku_key, sku_entry) in zip(lines.values(), skus, entries):
                available, reserved, sold = _levels(sku_entry)
                checks.append(Version(sku_key, sku_entry.version))  # type: ignore[union-attr]
                moved = ((available, reserved - units, sold + units) if ending == "confirmed"
                         else (available + units, reserved - units, sold))
                ops.append(Update(sku_key, _encode(moved)))
            ops += [Update(key, json.dumps({**record, "state": ending, "w": write_id}).encode()),
                    Delete(self._leaf("e", record["expires"], hold_id).key),
                    self._leaf("x", now, hold_id)]
            try:
                applied = self._kv.commit(checks, ops) is not None
            except OutcomeUnknown:
                current = self._read_back(key, state)
                applied = current is not None and json.loads(current.value).get("w") == write_id
            if applied and ending != state:
                raise HoldExpired(f"hold {hold_id} expired; its stock went back")
            if applied:
                return
            # The hold or a SKU changed (or our write did not apply): look again.

    def sweep(self) -> int:
        """Return the stock of holds past their expiry (by this client's clock) and
        forget holds settled ``KEEP_SETTLED`` seconds ago; how many holds expired."""
        self._last_sweep = time.monotonic()
        now = time.time_ns()
        expired = 0
        for leaf in self._kv.leaves(f"{self._root}/e", 2, _SWEEP_BATCH):
            expires, hold_id = leaf.rsplit("/", 1)[1].split(".", 1)
            if int(expires) > now:
                break
            try:
                self.settle(hold_id, "expired")
                expired += 1
            except (Conflict, HoldExpired):
                pass  # another client got there first
        horizon = now - int(KEEP_SETTLED * 1e9)
        for leaf in self._kv.leaves(f"{self._root}/x", 2, _SWEEP_BATCH):
            settled, hold_id = leaf.rsplit("/", 1)[1].split(".", 1)
            if int(settled) > horizon:
                break
            try:
                self._kv.commit([Present(leaf)], [Delete(leaf), Delete(self._hold(hold_id))])
            except OutcomeUnknown:
                pass  # the next sweep sees
        return expired

    def _read_back(self, key: str, what: str) -> Entry | None:
        """After a lost reply: ``key`` as it is now; ``UncertainOutcome`` if unreadable."""
        try:
            return self._kv.get(key)
        except BackendUnavailable as exc:
            raise UncertainOutcome(f"inventory {self.name!r}: the {what} may have applied "
                                   f"({exc})") from None

    def _sweep_if_due(self) -> None:
        if time.monotonic() - self._last_sweep >= _SWEEP_EVERY:
            self.sweep()

    @staticmethod
    def _check_lines(lines: Mapping[str, int], minimum: int) -> dict[str, int]:
        if not isinstance(lines, Mapping) or not lines:
            raise InvalidArgument(f"lines must be a non-empty mapping of SKU -> units, got {lines!r}")
        for sku, units in lines.items():
            if not isinstance(sku, str) or not sku:
                raise InvalidArgument(f"a SKU must be a non-empty str, got {sku!r}")
            if isinstance(units, bool) or not isinstance(units, int) or units < minimum:
                raise InvalidArgument(f"units of {sku!r} must be an int >= {minimum}, got {units!r}")
        return dict(sorted(lines.items()))
