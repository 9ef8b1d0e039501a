"""``typing.NamedTuple``'s class syntax, without importing ``typing``.

``bastion sign`` and ``bastion verify`` start hashing as soon as they have walked the model,
and every millisecond before that is a millisecond both cores sit idle. Importing ``typing``
(with ``re`` and ``enum``) took ~12 ms of that on the 2-vCPU machines, and each
``typing.NamedTuple`` class ~0.5-1 ms more (it compiles every string annotation into a
``ForwardRef``); the dozen records those commands declare before hashing cost ~25 ms in all.
This module declares the same classes with :func:`collections.namedtuple` (~0.2 ms each).

Type checkers see ``typing.NamedTuple`` itself. At run time a class body may hold annotated
fields (with defaults, which must come last), methods, properties, a docstring and plain
class attributes; ``super()`` is refused, as ``typing`` cannot support it either. The result
is a plain :func:`collections.namedtuple` class with the body's attributes, the same thing
``typing`` builds. ``tests/test_records.py`` checks the two agree.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the point here)

if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:
    #: Namespace entries that are Python's bookkeeping, not the class's own attributes.
    _BOOKKEEPING = frozenset({"__module__", "__qualname__", "__annotations__", "__doc__"})
    #: Names a namedtuple defines itself: a body must not replace them.
    _RESERVED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields",
                           "_field_defaults", "_make", "_replace", "_asdict", "_source"})

    class _RecordMeta(type):
        def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, object]):
            if not bases:  # NamedTuple itself
                return super().__new__(mcls, name, bases, namespace)
            if bases != (NamedTuple,):
                raise TypeError(f"{name}: a NamedTuple record cannot have other bases")
            if "__classcell__" in namespace:
                raise TypeError(f"{name}: super() and __class__ are not supported in a "
                                "NamedTuple record")
            fields = list(namespace.get("__annotations__", {}))
            defaults = []
            for field in fields:
                if field in namespace:
                    defaults.append(namespace[field])
                elif defaults:
                    raise TypeError(f"{name}: non-default field {field!r} follows a "
                                    "default one")
            cls = namedtuple(name, fields, defaults=defaults,
                             module=str(namespace["__module__"]))
            cls.__qualname__ = str(namespace.get("__qualname__", name))
            cls.__annotations__ = dict(namespace.get("__annotations__", {}))
            if namespace.get("__doc__") is not None:
                cls.__doc__ = namespace["__doc__"]
            for key, value in namespace.items():
                if key in _RESERVED:
                    raise AttributeError(f"{name}: cannot overwrite NamedTuple attribute "
                                         f"{key}")
                if key not in _BOOKKEEPING and key not in fields:
                    setattr(cls, key, value)
            return cls

    class NamedTuple(metaclass=_RecordMeta):
        """Base of a record class: ``class Point(NamedTuple): x: int; y: int = 0``."""
