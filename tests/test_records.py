"""bastion.records builds what typing.NamedTuple and dataclasses build, without importing them."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
import typing
from typing import Any

import pytest

from bastion import records
from bastion.records import NamedTuple


def _declare(base: type, name: str) -> type:
    """The same class body on either base: ours, or typing's."""

    class Record(base):  # type: ignore[valid-type,misc]
        """A record."""

        name: str
        size: int = 0
        tags: tuple[str, ...] = ()
        #: A plain class attribute, not a field.
        LIMIT = 10

        @property
        def label(self) -> str:
            return f"{self.name}:{self.size}"

        def grown(self, by: int) -> Record:
            return self._replace(size=self.size + by)  # type: ignore[no-any-return]

    Record.__name__ = Record.__qualname__ = name  # found by pickle as a module global
    return Record


Ours: Any = _declare(NamedTuple, "Ours")
Theirs: Any = _declare(typing.NamedTuple, "Theirs")


def test_a_record_behaves_as_typing_builds_it() -> None:
    ours, theirs = Ours("w", 3), Theirs("w", 3)
    assert Ours._fields == Theirs._fields == ("name", "size", "tags")
    assert Ours._field_defaults == Theirs._field_defaults == {"size": 0, "tags": ()}
    assert ours == theirs == ("w", 3, ())  # plain tuples, compared by value
    assert hash(ours) == hash(theirs)
    assert repr(ours) == repr(theirs).replace("Theirs", "Ours")
    assert ours.label == theirs.label == "w:3"
    assert ours.grown(2) == Ours("w", 5)
    assert type(ours.grown(2)) is Ours
    assert Ours.LIMIT == 10
    assert "LIMIT" not in Ours._fields
    assert Ours.__doc__ == Theirs.__doc__ == "A record."
    assert Ours.__module__ == Theirs.__module__ == __name__
    assert Ours.__qualname__ == "Ours"
    assert Theirs.__qualname__ == "Theirs"
    assert list(Ours.__annotations__) == list(Theirs.__annotations__)
    assert Ours.__match_args__ == Theirs.__match_args__
    assert isinstance(ours, tuple)
    assert issubclass(Ours, tuple)
    assert pickle.loads(pickle.dumps(ours)) == ours
    assert Ours(name="x", tags=("a",)) == ("x", 0, ("a",))
    with pytest.raises(AttributeError):
        ours.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Ours()  # type: ignore[call-arg]


def test_a_record_refuses_what_typing_refuses() -> None:
    with pytest.raises(TypeError, match="non-default field 'b'"):
        class _Bad(NamedTuple):
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(AttributeError, match="_replace"):
        class _Overwrites(NamedTuple):
            a: int

            def _replace(self) -> None:  # type: ignore[override]
                pass

    with pytest.raises(TypeError, match="super"):
        class _Super(NamedTuple):
            a: int

            def __repr__(self) -> str:
                return super().__repr__()


def test_importing_records_does_not_import_typing() -> None:
    code = ("import sys; from bastion.records import NamedTuple\n"
            "class P(NamedTuple):\n    x: int\n    y: int = 0\n"
            "print(P(1), 'typing' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["P(x=1,", "y=0)", "False"], done.stderr


# bastion.records.dataclass: the standard decorator's subset, compared on the same bodies.

def _value_classes(decorator: Any, make_field: Any) -> tuple[type, type]:
    @decorator(frozen=True, slots=True)
    class Point:
        """A point."""

        x: int
        label: str = "p"
        tags: tuple[str, ...] = ()
        extra: dict[str, int] = make_field(default_factory=dict, compare=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "label", self.label.strip())

        @property
        def doubled(self) -> int:
            return self.x * 2

        @classmethod
        def origin(cls) -> Point:
            return cls(0)

    @decorator
    class Bag:
        items: list[int] = make_field(default_factory=list)
        count: int = 0

    return Point, Bag


OurPoint, OurBag = _value_classes(records.dataclass, records.field)
TheirPoint, TheirBag = _value_classes(dataclasses.dataclass, dataclasses.field)
for _cls, _name in ((OurPoint, "OurPoint"), (TheirPoint, "TheirPoint")):
    _cls.__name__ = _cls.__qualname__ = _name  # found by pickle as module globals


@pytest.mark.parametrize(("point", "bag"), [(OurPoint, OurBag), (TheirPoint, TheirBag)],
                         ids=["ours", "stdlib"])
def test_a_value_behaves_as_dataclasses_builds_it(point: Any, bag: Any) -> None:
    one = point(1, " a ", ("t",), {"k": 1})
    assert (one.x, one.label, one.tags, one.extra, one.doubled) == (1, "a", ("t",), {"k": 1}, 2)
    assert one == point(1, "a", ("t",), {"other": 2})  # extra is not compared...
    assert hash(one) == hash(point(1, "a", ("t",)))  # ...nor hashed
    assert one != point(2, "a", ("t",))
    assert one != (1, "a", ("t",))
    assert point(1).extra == {}
    assert point(1).extra is not point(1).extra
    assert point.origin() == point(0)
    assert point.__doc__ == "A point."
    assert repr(point(1, "b")).endswith("(x=1, label='b', tags=(), extra={})")
    with pytest.raises(AttributeError):
        one.x = 2
    with pytest.raises(AttributeError):
        del one.label
    with pytest.raises((AttributeError, TypeError)):  # 3.11's own raises TypeError here
        one.other = 1  # slotted: no other attribute either
    with pytest.raises(TypeError):
        point()  # x has no default
    assert pickle.loads(pickle.dumps(one)) == one
    assert copy.deepcopy(one) == one
    assert copy.copy(one) == one
    changed = (records.replace if point is OurPoint else dataclasses.replace)(one, x=5)
    assert (changed.x, changed.label, changed.extra, one.x) == (5, "a", {"k": 1}, 1)
    names = (records.field_names(point) if point is OurPoint
             else tuple(f.name for f in dataclasses.fields(point)))
    assert names == ("x", "label", "tags", "extra")
    mutable = bag()
    mutable.items.append(1)
    mutable.count = 2
    assert (mutable.items, mutable.count, bag().items) == ([1], 2, [])
    assert mutable == bag([1], 2)
    with pytest.raises(TypeError):
        hash(mutable)  # mutable values are not hashable


def test_replace_and_as_dict() -> None:
    one = OurPoint(1, "a")
    assert records.as_dict(one) == {"x": 1, "label": "a", "tags": (), "extra": {}}
    with pytest.raises(TypeError, match="no field 'y'"):
        records.replace(one, y=1)


def test_a_value_refuses_a_field_without_default_after_one_with() -> None:
    with pytest.raises(TypeError, match="non-default argument 'y'"):
        @records.dataclass(frozen=True)
        class Wrong:
            x: int = 0
            y: int  # type: ignore[misc]


def test_a_value_refuses_methods_it_would_overwrite() -> None:
    with pytest.raises(TypeError, match="writes __eq__ itself"):
        @records.dataclass(frozen=True)
        class Custom:
            x: int

            def __eq__(self, other: object) -> bool:
                return True


def test_the_verifier_spine_does_not_import_dataclasses() -> None:
    code = ("import sys; import bastion.policy, bastion.sign.verify, bastion.report\n"
            "print(sorted(m for m in ('dataclasses', 'inspect') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
