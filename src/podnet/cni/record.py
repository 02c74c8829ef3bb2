"""Frozen records, the plugin's value types (results, configuration, what netlink reports).

A record class names its fields in `__slots__` and its defaults in `_defaults`; instances are
built by position or keyword, compared and hashed by value, and cannot be changed (`_replace`
makes a changed copy). This is what the code used named tuples for, without their cost to a
plugin run (collections ~1.4 ms; dataclasses, with inspect and ast, ~10 ms). Unlike a named
tuple a record is not a sequence: it equals only a record of the same class.
"""


class Record:
    __slots__ = ()
    _defaults: dict = {}  # field -> default value (a class attribute, shared: values are immutable)

    def __init__(self, *args, **kwargs) -> None:
        fields = self.__slots__
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} arguments, {len(args)} given")
        for name, value in zip(fields, args):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}() got multiple values for {name!r}")
            kwargs[name] = value
        for name in fields:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in self._defaults:
                value = self._defaults[name]
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(kwargs)}")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def _replace(self, **changes):
        """A copy with some fields changed, like a named tuple's."""
        return type(self)(**{name: changes.pop(name, getattr(self, name)) for name in self.__slots__}, **changes)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self):  # pickle and copy: the default would set the slots one by one
        return type(self), self._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"
