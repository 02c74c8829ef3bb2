"""A count of the changes to what the supervisor records of its pods (supervisor/record.py).

At 10,000 pods, building that record to compare it with the one written last takes ~0.1 s:
too long to do under the supervisor's lock every round, when every write to the cluster waits
for that lock. Instead the objects the record is made of count their own changes — a field
assigned, a key set or removed — and the record is written again when the count has moved
since its last writing. The count is read before the record is built, so a change made while
it is built moves it again and is written next time: nothing is missed. What is changed in
place inside a value (a list appended to) is not seen: the recorded objects are changed by
assignment.

Each change also names the pod it belongs to (its ref, "namespace/name"), so a consumer (the
record, the API's live status) looks again at the pods that changed, not at every pod: each
keeps a ChangedRefs, which every change adds its pod to until the consumer takes them.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import ClassVar

_sequence = itertools.count(1)
count = 0  # moves at every change (next() is atomic under the GIL: two threads never share a value)
# the open ChangedRefs' sets: a tuple, replaced whole (a change in another thread iterates
# the one it read, never one being changed)
_consumers: tuple[set[str], ...] = ()


def note(ref: str | None = None) -> int:
    """A change, of the pod `ref` if it is known: its pod first, then the count (a consumer that
    sees the count moved finds the pod among those it takes)."""
    global count
    if ref is not None:
        for refs in _consumers:
            refs.add(ref)
    count = value = next(_sequence)
    return value


_registering = threading.RLock()  # consumers come and go (a finalizer, on any thread) one at a time


class ChangedRefs:
    """The refs of the pods changed since this consumer last took them (or since it was made)."""

    def __init__(self) -> None:
        global _consumers
        self._refs: set[str] = set()
        with _registering:
            _consumers = (*_consumers, self._refs)
        weakref.finalize(self, _forget, id(self._refs))

    def take(self) -> set[str]:
        """The refs noted since the last take. Popped one by one, never swapped: a ref another
        thread adds meanwhile is taken now or the next time, never lost."""
        taken, refs = set(), self._refs
        while refs:
            taken.add(refs.pop())
        return taken

    def pending(self) -> int:
        """How many refs wait to be taken."""
        return len(self._refs)

    def put_back(self, refs: set[str]) -> None:
        """Refs taken but not dealt with (the consumer failed): taken again next time."""
        self._refs.update(refs)


def _forget(refs_id: int) -> None:
    global _consumers
    with _registering:
        _consumers = tuple(refs for refs in _consumers if id(refs) != refs_id)


def version(obj: "Counted") -> int:
    """The count at `obj`'s last change (0: none since it was made)."""
    return obj.__dict__.get("_counted", 0)


class Counted:
    """A mixin: every assignment to a field, except those in `_uncounted`, is a change (of the
    pod `_changed_pod` names)."""

    _uncounted: ClassVar[frozenset[str]] = frozenset()

    def _changed_pod(self) -> str | None:
        return None

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name not in self._uncounted:
            self.__dict__["_counted"] = note(self._changed_pod())  # its own version too


class CountedDict(dict):
    """A dict keyed by pod ref whose keys set or removed are changes of those pods (its values
    are replaced, not changed in place)."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        note(key)

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        note(key)

    def pop(self, key, *default):
        value = super().pop(key, *default)
        note(key)
        return value

    def popitem(self):
        item = super().popitem()
        note(item[0])
        return item

    def setdefault(self, key, default=None):
        value = super().setdefault(key, default)
        note(key)
        return value

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        for key in list(self):
            del self[key]
