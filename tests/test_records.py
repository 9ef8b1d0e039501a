"""bastion.records.NamedTuple builds what typing.NamedTuple builds, without importing typing."""

from __future__ import annotations

import pickle
import subprocess
import sys
import typing
from typing import Any

import pytest

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
