"""``typing.NamedTuple``'s class syntax without importing ``typing``, and frozen
dataclasses without importing ``dataclasses``.

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

The same holds for the report spine's values (findings, rules, the policy), which ``bastion
verify`` builds while its model hashes: ``dataclasses`` imports ``inspect`` (with ``ast``,
``dis`` and ``tokenize``), ~16 ms, and each slotted dataclass costs ~0.7 ms more; on 2 vCPUs
the main thread's CPU during hashing adds ~0.6x itself to the wall time (measured: 22 ms of
it added 13.6 ms to a 1.3 s verification, 16 rounds). :func:`dataclass` here builds the
subset those classes use: ``frozen``, slots always, defaults, ``field(default_factory=...,
compare=...)`` and ``__post_init__``; generated ``__init__``, ``__eq__``, ``__hash__`` (frozen),
``__repr__`` and pickling, as :mod:`dataclasses` generates them. :func:`replace`,
:func:`as_dict` and :func:`field_names` stand for ``dataclasses.replace``, ``asdict`` (one
level) and ``fields``. Type checkers see :mod:`dataclasses` itself.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the point here)

if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
    from dataclasses import field as field
    from typing import Any, TypeVar
    from typing import NamedTuple as NamedTuple

    _T = TypeVar("_T")
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

    _MISSING = object()

    class _Field:
        """What :func:`field` returns: a default, or a factory for one, and whether
        equality and hashing look at the field."""

        __slots__ = ("compare", "default", "default_factory")

        def __init__(self, default, default_factory, compare):
            self.default, self.default_factory, self.compare = default, default_factory, compare

    def field(*, default=_MISSING, default_factory=None, compare=True):
        """``dataclasses.field`` for :func:`dataclass`: ``default``, ``default_factory``,
        ``compare``."""
        return _Field(default, default_factory, compare)

    def dataclass(cls=None, /, *, frozen=False, slots=True):
        """``dataclasses.dataclass`` (``frozen``; always slotted) without importing it."""
        if cls is None:
            return lambda c: _build(c, frozen)
        return _build(cls, frozen)

    #: Methods :func:`dataclass` writes itself: ``dataclasses`` would keep a body's own
    #: ``__eq__`` or ``__repr__``, and this subset refuses them rather than replace them.
    _GENERATED = ("__init__", "__eq__", "__repr__", "__setattr__", "__delattr__", "__reduce__")

    def _build(cls, frozen):
        own = cls.__dict__
        for name in _GENERATED:
            if name in own:
                raise TypeError(f"{cls.__name__}: records.dataclass writes {name} itself")
        names = tuple(n for n, kind in own.get("__annotations__", {}).items()
                      if not str(kind).startswith(("ClassVar", "typing.ClassVar")))
        scope = {"_set": object.__setattr__, "_MISSING": _MISSING}
        params, body, compared = [], [], []
        for name in names:
            spec = own.get(name, _MISSING)
            if not isinstance(spec, _Field):
                spec = _Field(spec, None, True)
            if spec.compare:
                compared.append(name)
            if spec.default_factory is not None:
                scope[f"_factory_{name}"] = spec.default_factory
                params.append(f"{name}=_MISSING")
                value = f"_factory_{name}() if {name} is _MISSING else {name}"
            else:
                if spec.default is not _MISSING:
                    scope[f"_default_{name}"] = spec.default
                    params.append(f"{name}=_default_{name}")
                elif any("=" in p for p in params):
                    raise TypeError(f"{cls.__name__}: non-default argument {name!r} follows "
                                    "default argument")
                else:
                    params.append(name)
                value = name
            body.append(f"    _set(self, {name!r}, {value})" if frozen
                        else f"    self.{name} = {value}")
        if "__post_init__" in own:
            body.append("    self.__post_init__()")
        source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or ["    pass"])
        exec(source, scope)  # noqa: S102 (our own source: field names of our own classes)
        namespace = {k: v for k, v in own.items()
                     if k not in names and k not in ("__dict__", "__weakref__")}
        init = scope["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        namespace.update(__slots__=names, __init__=init, __value_fields__=names,
                         __value_compare__=tuple(compared), __eq__=_eq, __repr__=_repr,
                         __reduce__=_reduce)
        if frozen:
            namespace.update(__hash__=_hash, __setattr__=_frozen, __delattr__=_frozen)
        else:
            namespace["__hash__"] = None
        return type(cls)(cls.__name__, cls.__bases__, namespace)

    def _key(self):
        return tuple(getattr(self, name) for name in self.__value_compare__)

    def _eq(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _key(self) == _key(other)

    def _hash(self):
        return hash(_key(self))

    def _repr(self):
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__value_fields__)
        return f"{type(self).__qualname__}({shown})"

    def _reduce(self):
        return type(self), tuple(getattr(self, n) for n in self.__value_fields__)

    def _frozen(self, name, *_):
        raise AttributeError(f"cannot assign to or delete field {name!r}")


def replace(value: _T, /, **changes: Any) -> _T:
    """A copy of a :func:`dataclass` value with some fields changed (``dataclasses.replace``)."""
    names = type(value).__value_fields__  # type: ignore[attr-defined]
    unknown = set(changes) - set(names)
    if unknown:
        raise TypeError(f"{type(value).__name__} has no field {sorted(unknown)[0]!r}")
    return type(value)(**{**{n: getattr(value, n) for n in names}, **changes})


def as_dict(value: object) -> dict[str, Any]:
    """A :func:`dataclass` value's fields by name, one level (nested values are kept)."""
    return {n: getattr(value, n) for n in type(value).__value_fields__}  # type: ignore[attr-defined]


def field_names(cls: type) -> tuple[str, ...]:
    """A :func:`dataclass` class's field names, in order."""
    return cls.__value_fields__  # type: ignore[attr-defined, no-any-return]
