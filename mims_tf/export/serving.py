"""Clients for a TF Serving server running an exported model: gRPC `Predict` and the REST JSON form.

Start a server (Docker; TF Serving cannot be installed from PyPI or Debian):

    docker run -p 8500:8500 -p 8501:8501 \\
        -v "$PWD/runs/adrenal/export/saved_models/mims:/models/mims" -e MODEL_NAME=mims tensorflow/serving

gRPC on port 8500 (`predict_grpc`, needs `pip install "mims-tf[serving]"`), REST on 8501
(`rest_body` gives the JSON to POST to `http://HOST:8501/v1/models/mims:predict`).
"""

import json

import numpy as np


def predict_grpc(address, bags, model_name="mims", signature="serving_default", timeout=30.0):
    """Calls `PredictionService.Predict` and returns the probabilities `(B, classes)`.

    Args:
        address: `"host:port"` of the server's gRPC endpoint (TF Serving: 8500).
        bags: float32 `(B, S, H, W, C)` pixel values in [0, 255].
        model_name: the served model's name.
        signature: the signature to call.
        timeout: seconds.
    """
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    request.inputs["bags"].CopyFrom(tf.make_tensor_proto(np.asarray(bags, np.float32)))
    with grpc.insecure_channel(address) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
    return tf.make_ndarray(response.outputs["probabilities"])


def rest_body(bags, signature="serving_default"):
    """The JSON body for TF Serving's REST `:predict` endpoint."""
    return json.dumps({"signature_name": signature, "instances": np.asarray(bags, np.float32).tolist()})


def predict_rest(url, bags, timeout=30.0):
    """POSTs `rest_body(bags)` to `url` (e.g. `http://localhost:8501/v1/models/mims:predict`)."""
    import urllib.request

    request = urllib.request.Request(url, data=rest_body(bags).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return np.asarray(json.loads(response.read())["predictions"], np.float32)
