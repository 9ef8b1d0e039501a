"""Input schemas: the schema itself is validated strictly, and every way a request's
``inputs`` can break it gives the right status (413/422) and a message that says where."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from bastion.gateway.errors import InputRejected
from bastion.gateway.schema import InputSchema

IRIS = {"shape": [None, 4], "dtype": "float32", "min": 0, "max": 10, "max_batch": 8}


def rejected(schema: InputSchema, payload: Any) -> tuple[int, str]:
    with pytest.raises(InputRejected) as info:
        schema.coerce(payload)
    return info.value.status, info.value.message


def test_valid_input_becomes_an_array() -> None:
    schema = InputSchema.parse(IRIS)
    x = schema.coerce(json.loads("[[5.1, 3.5, 1.4, 0.2], [6, 3, 5, 2]]"))
    assert x.dtype == np.float32
    assert x.shape == (2, 4)
    assert x.tolist() == [[pytest.approx(5.1), 3.5, pytest.approx(1.4), pytest.approx(0.2)],
                          [6, 3, 5, 2]]


def test_other_dtypes_and_shapes() -> None:
    image = InputSchema.parse({"shape": [None, 2, 2], "dtype": "uint8", "max_batch": 2})
    x = image.coerce([[[0, 255], [7, 8]]])
    assert x.dtype == np.uint8
    assert x.shape == (1, 2, 2)
    flags = InputSchema.parse({"shape": [None, 3], "dtype": "bool"})
    assert flags.coerce([[True, False, True]]).dtype == np.bool_
    fixed = InputSchema.parse({"shape": [2, 3], "dtype": "int32"})
    assert fixed.coerce([[1, 2, 3], [4, 5, 6]]).dtype == np.int32
    seq = InputSchema.parse({"shape": [None, None], "dtype": "float64"})
    assert seq.coerce([[1, 2, 3, 4, 5]]).shape == (1, 5)
    assert seq.coerce([[1e300]]).dtype == np.float64


@pytest.mark.parametrize(("payload", "status", "words"), [
    ([[0, 0, 0, 0]] * 9, 413, "the batch has 9 inputs; this model takes at most 8"),
    ([], 422, "empty batch"),
    ([[0, 0, 0]], 422, "inputs[0] has 3 values; dimension 1 must have 4"),
    ([[0, 0, 0, 0], [0, 0, 0]], 422, "ragged input: inputs[1] has 3 values"),
    ([[0, 0, 0, 0], [0, 0, 0, 0, 0]], 422, "ragged input"),
    ([0, 0, 0, 0], 422, "inputs[0] must be a list of values"),
    (5, 422, "inputs must be a list of lists"),
    ({"a": 1}, 422, "inputs must be a list"),
    ([[0, 0, [1], 0]], 422, "inputs[0][2] is nested too deep"),
    ([[0, 0, "1", 0]], 422, "inputs[0][2] is a string; this model takes numbers"),
    ([[0, None, 0, 0]], 422, "inputs[0][1] is null"),
    ([[0, 0, 0, True]], 422, "inputs[0][3] is a boolean"),
    ([[0, 0, 0, {"x": 1}]], 422, "is an object"),
    ([[0, float("nan"), 0, 0]], 422, "inputs[0][1] is nan: NaN and infinity"),
    ([[0, 0, float("inf"), 0]], 422, "inputs[0][2] is inf"),
    ([[0, 0, 0, float("-inf")]], 422, "NaN and infinity"),
    ([[0, 0, 0, 0], [0, 11, 0, 0]], 422, "inputs[1][1] is 11.0, above the maximum 10"),
    ([[0, -0.5, 0, 0]], 422, "inputs[0][1] is -0.5, below the minimum 0"),
    ([[0, 10**400, 0, 0]], 422, "too large"),
])
def test_violations(payload: Any, status: int, words: str) -> None:
    got_status, message = rejected(InputSchema.parse(IRIS), payload)
    assert (got_status, words in message) == (status, True), message


def test_integer_models_refuse_fractions_and_out_of_range() -> None:
    schema = InputSchema.parse({"shape": [None, 2], "dtype": "uint8"})
    assert rejected(schema, [[1, 2.5]]) == (422, "inputs[0][1] is a decimal number; this "
                                                 "model takes integers")
    assert rejected(schema, [[1, 256]])[1] == "inputs[0][1] is 256, above the maximum 255"
    assert rejected(schema, [[-1, 0]])[1] == "inputs[0][0] is -1, below the minimum 0"
    assert rejected(schema, [[1, 2**64]])[0] == 422
    big = InputSchema.parse({"shape": [None, 1], "dtype": "int32"})
    assert "above the maximum 2.14748e+09" in rejected(big, [[2**31]])[1]


def test_float32_overflow_refused() -> None:
    schema = InputSchema.parse({"shape": [None, 1], "dtype": "float32"})
    assert "above the maximum" in rejected(schema, [[1e39]])[1]


def test_bool_model_takes_booleans_only() -> None:
    schema = InputSchema.parse({"shape": [None, 2], "dtype": "bool"})
    assert rejected(schema, [[1, 0]])[1] == ("inputs[0][0] is an integer; this model takes "
                                             "true/false values")


def test_work_is_bounded_before_conversion() -> None:
    """A body that is small as JSON references but huge as values is refused at once."""
    schema = InputSchema.parse({"shape": [None, None], "max_batch": 64,
                                "max_elements": 100_000})
    row = [0.5] * 200_000  # one list, shared by every row: cheap to build, 12.8 M values
    started = time.perf_counter()
    status, message = rejected(schema, [row] * 64)
    assert time.perf_counter() - started < 0.05
    assert status == 413
    assert "at most 100000" in message
    nested: Any = 1.0
    for _ in range(100_000):
        nested = [nested]
    started = time.perf_counter()
    status, message = rejected(InputSchema.parse({"shape": [None, None]}), nested)
    assert time.perf_counter() - started < 0.05
    assert status == 422
    assert "inputs[0][0] is nested too deep" in message
    status, message = rejected(InputSchema.parse(IRIS), nested)
    assert status == 422
    assert "inputs[0] has 1 value; dimension 1 must have 4" in message


@pytest.mark.parametrize(("spec", "words"), [
    ({"shape": []}, "shape"),
    ({"shape": [None] * 9}, "shape"),
    ({"shape": [None, 0]}, "shape[1] must be null or between 1"),
    ({"shape": [None, -3]}, "shape[1]"),
    ({"shape": [None, "4"]}, "shape.1"),
    ({"shape": [None, 4.0]}, "shape.1"),
    ({"shape": [None, True]}, "shape.1"),
    ({"shape": [None], "dtype": "float16"}, "dtype"),
    ({"shape": [None], "dtype": "object"}, "dtype"),
    ({"shape": [None], "min": 2, "max": 1}, "min 2 is above max 1"),
    ({"shape": [None], "min": "0"}, "min"),
    ({"shape": [None], "min": float("nan")}, "finite"),
    ({"shape": [None], "dtype": "uint8", "min": -1}, "outside the range of uint8"),
    ({"shape": [None], "dtype": "bool", "max": 1}, "does not apply to bool"),
    ({"shape": [None], "max_batch": 0}, "max_batch"),
    ({"shape": [None], "max_batch": 10**9}, "max_batch"),
    ({"shape": [None], "max_body_bytes": 1}, "max_body_bytes"),
    ({"shape": [None], "surprise": 1}, "surprise: Extra inputs are not permitted"),
    ({"dtype": "float32"}, "shape"),
    ([None, 4], "schema"),
])
def test_schema_itself_is_validated(spec: Any, words: str) -> None:
    with pytest.raises(ValueError, match="invalid input schema") as info:
        InputSchema.parse(spec)
    assert words in str(info.value)


def test_schema_round_trips_as_json() -> None:
    spec = {**IRIS, "max_body_bytes": 4096}
    schema = InputSchema.parse(spec)
    assert schema.max_body_bytes == 4096
    assert schema.rank == 2
    again = InputSchema.parse(json.loads(schema.model_dump_json()))
    assert again == schema
