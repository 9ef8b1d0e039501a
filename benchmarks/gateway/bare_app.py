"""The baseline: a bare FastAPI app serving the same ONNX model, with no protection at all.

    BARE_MODEL=model.onnx uvicorn --factory bare_app:create --port 8001

It parses the same JSON body, runs the same onnxruntime session (one intra-op thread, as the
gateway's loader) and answers the labels: everything the gateway does beyond this is the
cost being measured.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool


def create() -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.environ["BARE_MODEL"], options,
                                   providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    app = FastAPI()

    def run(body: bytes) -> dict[str, object]:
        x = np.asarray(json.loads(body)["inputs"], dtype=np.float32)
        outputs = session.run(None, {input_name: x})
        return {"labels": np.asarray(outputs[0]).tolist()}

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(await run_in_threadpool(run, body))

    return app
