"""A model's declared input schema, enforced on every request before the model runs.

The registry stores the schema as JSON, for example::

    {"shape": [null, 4], "dtype": "float32", "min": 0, "max": 1, "max_batch": 64}

``shape`` lists every dimension of one request's ``inputs``; the first is the batch, and
``null`` marks a free dimension (the batch, or a variable length). :meth:`InputSchema.coerce`
turns the JSON-decoded ``inputs`` (nested lists) into a NumPy array of the declared dtype, or
refuses with :class:`~bastion.gateway.errors.InputRejected`:

* 413 when the batch is over ``max_batch`` or the values over ``max_elements``;
* 422 for anything else: wrong nesting (too shallow, too deep), ragged lists, a dimension of
  the wrong size, a value that is not a number of the right kind (strings, ``null``,
  booleans for a numeric model, floats for an integer model), NaN or infinity, a value out
  of ``[min, max]`` or out of the dtype's range.

The work is bounded before anything is converted: only the lists are walked (level by level,
no recursion), the number of values at the next level is known — and refused when over the
limit — before that level is touched, and the leaves are type-checked in C (``map(type)``);
NumPy converts only what already passed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bastion.gateway.errors import InputRejected

if TYPE_CHECKING:
    import numpy as np

DType = Literal["float32", "float64", "int64", "int32", "uint8", "bool"]

MAX_RANK = 8
MAX_DIM = 1 << 24

#: The range each integer dtype holds; values outside it are refused, never wrapped.
_INT_RANGE: dict[str, tuple[int, int]] = {
    "int64": (-(1 << 63), (1 << 63) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint8": (0, 255),
}
_FLOAT32_MAX = 3.4028234663852886e38


class InputSchema(BaseModel):
    """Shape, dtype, value range and size limits of one model's input."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    shape: list[int | None] = Field(min_length=1, max_length=MAX_RANK)
    dtype: DType = "float32"
    min: float | None = None
    max: float | None = None
    max_batch: int = Field(64, ge=1, le=1 << 20)
    #: Upper bound on the number of values in one request, whatever the shape.
    max_elements: int = Field(1 << 20, ge=1, le=1 << 28)
    #: The largest request body for this model (the gateway's own limit applies otherwise).
    max_body_bytes: int | None = Field(None, ge=64, le=1 << 30)

    @model_validator(mode="after")
    def _consistent(self) -> InputSchema:
        for index, dim in enumerate(self.shape):
            if dim is not None and not 1 <= dim <= MAX_DIM:
                raise ValueError(f"shape[{index}] must be null or between 1 and {MAX_DIM}")
        for name in ("min", "max"):
            value = getattr(self, name)
            if value is None:
                continue
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{name} must be a finite number")
            if self.dtype == "bool":
                raise ValueError(f"{name} does not apply to bool inputs")
            if self.dtype in _INT_RANGE:
                low, high = _INT_RANGE[self.dtype]
                if not low <= value <= high:
                    raise ValueError(f"{name} {value:g} is outside the range of {self.dtype}")
            if self.dtype == "float32" and abs(value) > _FLOAT32_MAX:
                raise ValueError(f"{name} {value:g} is outside the range of float32")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    @classmethod
    def parse(cls, spec: Any) -> InputSchema:
        """The schema ``spec`` describes, or ``ValueError`` with one line per problem."""
        try:
            return cls.model_validate(spec)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "schema"
                problems.append(f"{where}: {err['msg']}")
            raise ValueError("invalid input schema: " + "; ".join(problems)) from None

    @property
    def rank(self) -> int:
        return len(self.shape)

    def coerce(self, payload: Any) -> np.ndarray[Any, Any]:
        """The request's ``inputs`` as an array of the declared dtype, or :class:`InputRejected`."""
        import numpy as np

        rank = self.rank
        widths: list[int] = []  # the size found at each level
        level: list[Any] = [payload]
        for depth in range(rank):
            expected = self.shape[depth]
            width = -1
            for index, node in enumerate(level):
                if type(node) is not list:
                    raise _reject(422, f"{_where(index, widths)} must be a list of "
                                  f"{_what(rank - depth)} (the input has rank {rank})")
                size = len(node)
                if width < 0:
                    width = size
                    if depth == 0:
                        if size == 0:
                            raise _reject(422, "inputs is an empty batch")
                        if size > self.max_batch:
                            raise _reject(413, f"the batch has {size} inputs; this model "
                                          f"takes at most {self.max_batch}")
                    if expected is not None and size != expected:
                        raise _reject(422, f"{_where(index, widths)} has {_values(size)}; "
                                      f"dimension {depth} must have {expected}")
                    if size == 0:
                        raise _reject(422, f"{_where(index, widths)} is empty")
                elif size != width:
                    raise _reject(422, f"ragged input: {_where(index, widths)} has "
                                  f"{_values(size)} where {_where(0, widths)} has {width}")
            widths.append(width)
            count = len(level) * width
            if count > self.max_elements:
                raise _reject(413, f"the input has {count} values at dimension {depth}; this "
                              f"model takes at most {self.max_elements}")
            if depth < rank - 1:
                level = [child for node in level for child in node]
        kinds: set[type] = set()
        for node in level:
            kinds.update(map(type, node))
        allowed = _LEAF_TYPES[self.dtype]
        if not kinds <= allowed:
            raise self._bad_leaf(level, widths, allowed)
        return self._convert(np, payload, tuple(widths))

    def _bad_leaf(self, level: list[Any], widths: list[int],
                  allowed: frozenset[type]) -> InputRejected:
        """The message for the first leaf of a wrong kind (the slow path, only on error)."""
        inner = widths[-1]
        for index, node in enumerate(level):
            for offset, value in enumerate(node):
                if type(value) in allowed:
                    continue
                where = _where(index * inner + offset, widths)
                if type(value) is list:
                    return _reject(422, f"{where} is nested too deep: the input has rank "
                                   f"{self.rank}")
                return _reject(422, f"{where} is {_describe(value)}; this model takes "
                               f"{_KIND[self.dtype]}")
        return _reject(422, "inputs hold values of the wrong kind")  # pragma: no cover

    def _convert(self, np: Any, payload: Any, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
        dtype = self.dtype
        try:
            if dtype == "bool":
                return np.array(payload, dtype=np.bool_)  # type: ignore[no-any-return]
            wide = np.array(payload, dtype=np.int64 if dtype in _INT_RANGE else np.float64)
        except (OverflowError, ValueError):
            raise _reject(422, f"inputs hold a number too large for {dtype}") from None
        if wide.shape != shape:  # cannot happen after the walk; never hand on a surprise
            raise _reject(422, f"inputs have shape {wide.shape}, expected {shape}")
        if wide.size and self._plainly_in_range(wide):
            return wide.astype(dtype, copy=False)  # type: ignore[no-any-return]
        # Something is out of range (or not finite): find it, and say where.
        if dtype in _INT_RANGE:
            low, high = _INT_RANGE[dtype]
            self._check_range(np, wide, low, high)
        else:
            finite = np.isfinite(wide)
            if not finite.all():
                at = _index(np, ~finite)
                raise _reject(422, f"{at} is {wide[tuple(np.argwhere(~finite)[0])]!s}: "
                              "NaN and infinity are not accepted")
            limit = _FLOAT32_MAX if dtype == "float32" else None
            self._check_range(np, wide, None if limit is None else -limit, limit)
        return wide.astype(dtype, copy=False)  # type: ignore[no-any-return]

    def _plainly_in_range(self, wide: Any) -> bool:
        """Whether every value is finite and within the schema's and the dtype's bounds,
        from the smallest and the largest value alone (NaN in either fails every test)."""
        smallest, largest = wide.min().item(), wide.max().item()
        low: float
        high: float
        if self.dtype in _INT_RANGE:
            low, high = _INT_RANGE[self.dtype]
        else:
            if not (math.isfinite(smallest) and math.isfinite(largest)):
                return False
            high = _FLOAT32_MAX if self.dtype == "float32" else math.inf
            low = -high
        if self.min is not None:
            low = max(low, self.min)
        if self.max is not None:
            high = min(high, self.max)
        return bool(low <= smallest and largest <= high)

    def _check_range(self, np: Any, wide: Any, low: float | None, high: float | None) -> None:
        for bound, name, schema_value in ((low, "min", self.min), (high, "max", self.max)):
            limit = schema_value if schema_value is not None else bound
            if schema_value is not None and bound is not None:
                limit = max(schema_value, bound) if name == "min" else min(schema_value, bound)
            if limit is None:
                continue
            bad = wide < limit if name == "min" else wide > limit
            if bad.any():
                value = wide[tuple(np.argwhere(bad)[0])].item()
                side = "below the minimum" if name == "min" else "above the maximum"
                raise _reject(422, f"{_index(np, bad)} is {value!r}, {side} {limit:g}")


_LEAF_TYPES: dict[str, frozenset[type]] = {
    "float32": frozenset({int, float}),
    "float64": frozenset({int, float}),
    "int64": frozenset({int}),
    "int32": frozenset({int}),
    "uint8": frozenset({int}),
    "bool": frozenset({bool}),
}
_KIND = {"float32": "numbers", "float64": "numbers", "int64": "integers",
         "int32": "integers", "uint8": "integers", "bool": "true/false values"}


def _reject(status: int, message: str) -> InputRejected:
    return InputRejected(status, message)


def _values(count: int) -> str:
    return "1 value" if count == 1 else f"{count} values"


def _what(levels: int) -> str:
    return "values" if levels == 1 else "lists"


def _where(flat: int, widths: Sequence[int]) -> str:
    """``inputs[i][j]`` for the ``flat``-th node of the level below ``widths``."""
    parts = []
    for width in reversed(widths):
        flat, rest = divmod(flat, width)
        parts.append(rest)
    return "inputs" + "".join(f"[{p}]" for p in reversed(parts))


def _index(np: Any, mask: Any) -> str:
    return "inputs" + "".join(f"[{int(i)}]" for i in np.argwhere(mask)[0])


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
