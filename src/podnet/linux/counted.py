"""A count of the changes to what the supervisor records of its pods (supervisor/record.py).

At 10,000 pods, building that record to compare it with the one written last takes ~0.1 s:
too long to do under the supervisor's lock every round, when every write to the cluster waits
for that lock. Instead the objects the record is made of count their own changes — a field
assigned, a key set or removed — and the record is written again when the count has moved
since its last writing. The count is read before the record is built, so a change made while
it is built moves it again and is written next time: nothing is missed. What is changed in
place inside a value (a list appended to) is not seen: the recorded objects are changed by
assignment.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

_sequence = itertools.count(1)
count = 0  # moves at every change (next() is atomic under the GIL: two threads never share a value)


def note() -> int:
    global count
    count = value = next(_sequence)
    return value


def version(obj: "Counted") -> int:
    """The count at `obj`'s last change (0: none since it was made)."""
    return obj.__dict__.get("_counted", 0)


class Counted:
    """A mixin: every assignment to a field, except those in `_uncounted`, is a change."""

    _uncounted: ClassVar[frozenset[str]] = frozenset()

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name not in self._uncounted:
            self.__dict__["_counted"] = note()  # its own version too: the record remakes only its entry


class CountedDict(dict):
    """A dict whose keys set or removed are changes (its values are replaced, not changed in place)."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        note()

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        note()

    def pop(self, *args):
        value = super().pop(*args)
        note()
        return value

    def popitem(self):
        item = super().popitem()
        note()
        return item

    def setdefault(self, key, default=None):
        value = super().setdefault(key, default)
        note()
        return value

    def update(self, *args, **kwargs) -> None:
        super().update(*args, **kwargs)
        note()

    def clear(self) -> None:
        super().clear()
        note()
