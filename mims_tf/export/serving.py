"""Clients for a TF Serving server running an exported model: gRPC `Predict` and the REST JSON form.

Start a server (Docker; TF Serving cannot be installed from PyPI or Debian):

    docker run -p 8500:8500 -p 8501:8501 \\
        -v "$PWD/runs/adrenal/export/saved_models/mims:/models/mims" -e MODEL_NAME=mims tensorflow/serving

gRPC on port 8500 (`predict_grpc`, needs `pip install "mims-tf[serving]"`), REST on 8501
(`rest_body` gives the JSON to POST to `http://HOST:8501/v1/models/mims:predict`). `prepare_bag` prepares
a volume as the export's run prepared its bags (`read_metadata`), so the server answers what `mims predict`
answers; `check_input` says where a volume is unlike the run's training bags (its input contract), as
`mims predict` warns.
"""

import json
import os

import numpy as np

from mims_tf.export.saved_model import METADATA
from mims_tf.utils import read_json


def read_metadata(path):
    """The metadata of an export: `path` is a SavedModel version folder (its `assets.extra/mims_tf.json`) or
    the `.json` file beside an exported TFLite or `.keras` file."""
    path = os.fspath(path)
    return read_json(os.path.join(path, METADATA) if os.path.isdir(path) else path)


def prepare_bag(volume, metadata):
    """One volume as a bag for the exported model, prepared exactly as its run prepared bags (the metadata's
    data block: normalisation, central slices, image size, channels).

    Args:
        volume: the instances of one bag, `(S, H, W)` or `(S, H, W, C)`, as `mims_tf.data.read_volume`
            reads them.
        metadata: the export's metadata (`read_metadata`).

    Returns:
        float32 `(1, S, H, W, C)` in [0, 255], what `mims predict` feeds the model for that volume.
    """
    from mims_tf.data.source import central_slices, kept_bag, normalize_volume
    from mims_tf.data.transforms import prepare_instances

    data = metadata["data"]
    image_size = tuple(data["image_size"])
    array = np.asarray(volume)
    array = array[..., None] if array.ndim == 3 else array
    array = kept_bag(central_slices(normalize_volume(array, data["normalize"]), data["central"]), image_size)
    return prepare_instances(array.astype(np.float32), image_size, data["channels"]).numpy()[None]


def check_input(volume, metadata, suffix=None):
    """How one volume differs from the bags the exported model was trained on (its input contract); an empty
    list where it does not, or where the export records no contract.

    Args:
        volume: the instances of one bag, `(S, H, W)` or `(S, H, W, C)`, as `mims_tf.data.read_volume` reads them.
        metadata: the export's metadata (`read_metadata`).
        suffix: the file suffix it was read from (e.g. `".nii.gz"`), or None.

    Returns:
        Short reasons, e.g. `["28 instances (trained on 1)"]`: the model's probability says little about such a
        bag (warn, or refuse it).
    """
    from mims_tf.data.contract import check_bag
    from mims_tf.data.source import central_slices, normalize_volume

    if not metadata.get("input_contract"):
        return []
    data = metadata["data"]
    array = np.asarray(volume)
    array = array[..., None] if array.ndim == 3 else array
    array = central_slices(normalize_volume(array, data["normalize"]), data["central"])
    return check_bag(metadata["input_contract"], np.asarray(array, np.float32), suffix)


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
