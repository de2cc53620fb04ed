from concurrent import futures

import numpy as np
import pytest

from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()
grpc = pytest.importorskip("grpc")
pytest.importorskip("tensorflow_serving.apis")


class PredictionService:
    """An in-test stand-in for TF Serving: serves one SavedModel's signatures over real gRPC."""

    def __init__(self, saved_model, name):
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.tf, self.name = tf, name
        self.signatures = tf.saved_model.load(saved_model).signatures

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(inner, request, context):  # noqa: N802, N805 - gRPC method name
                return self.predict(request, context)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def predict(self, request, context):
        from tensorflow_serving.apis import predict_pb2

        if request.model_spec.name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: {request.model_spec.name}")
        function = self.signatures[request.model_spec.signature_name or "serving_default"]
        inputs = {k: self.tf.constant(self.tf.make_ndarray(v)) for k, v in request.inputs.items()}
        response = predict_pb2.PredictResponse()
        for key, value in function(**inputs).items():
            response.outputs[key].CopyFrom(self.tf.make_tensor_proto(value.numpy()))
        return response


def test_grpc_client_gets_the_same_probabilities_as_mims_predict(trained_run, tmp_path):
    from mims_tf.export.serving import predict_grpc, prepare_bag, read_metadata, rest_body
    from mims_tf.runs.export import export_run
    from mims_tf.runs.predict import predict

    run = trained_run  # the session's tiny run (tests/conftest.py), 32 px; export and predict write elsewhere
    exported = export_run(run, "saved_model", out=str(tmp_path / "saved_models"))["path"]  # calibrated, as predict
    volume = np.random.default_rng(0).uniform(0, 255, (5, 40, 40)).astype(np.float32)
    np.save(tmp_path / "scan.npy", volume)
    expected = predict(run, [str(tmp_path / "scan.npy")], out=str(tmp_path / "p.csv"))[0]["probabilities"]

    service = PredictionService(exported, "mims")
    try:
        bag = prepare_bag(volume, read_metadata(exported))  # as examples/serving_client.py prepares it
        assert bag.shape == (1, 5, 32, 32, 3)
        got = predict_grpc(f"127.0.0.1:{service.port}", bag, model_name="mims")
        with pytest.raises(grpc.RpcError, match="Servable not found"):
            predict_grpc(f"127.0.0.1:{service.port}", bag, model_name="other")
    finally:
        service.server.stop(None)
    np.testing.assert_allclose(got[0], [expected["0"], expected["1"]], atol=1e-5)
    assert '"signature_name": "serving_default"' in rest_body(bag)


@pytest.mark.parametrize("data, volume", [
    ({"image_size": 32, "central": 8}, np.random.default_rng(0).uniform(-3, 7, (12, 40, 40)).astype(np.float32)),
    ({"image_size": (24, 28), "normalize": [-100, 200], "channels": 1},
     np.random.default_rng(1).integers(-500, 500, (6, 30, 30)).astype(np.int16)),
    ({"image_size": 16}, np.random.default_rng(2).integers(0, 256, (3, 20, 20, 3)).astype(np.uint8)),
    ({"image_size": 32, "central": 2}, np.random.default_rng(3).integers(0, 256, (4, 32, 32)).astype(np.uint8)),
])
def test_a_bag_prepared_from_the_exports_metadata_is_what_the_run_feeds_its_model(tmp_path, data, volume):
    from mims_tf.export.serving import prepare_bag, read_metadata
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.export import export_metadata
    from mims_tf.runs.inputs import eval_batches, unlabelled_source
    from mims_tf.utils import write_json

    config = RunConfig.from_dict(dict(out=str(tmp_path / "run"), **data))
    write_json(tmp_path / "mims.json", export_metadata(config, ["0", "1"], {"threshold": None}))
    np.save(tmp_path / "scan.npy", volume)
    source = unlabelled_source(config, ["0", "1"], [{"path": str(tmp_path / "scan.npy")}])
    fed = next(iter(eval_batches(config, source)))[0].numpy()  # what `mims predict` feeds the model
    bag = prepare_bag(volume, read_metadata(tmp_path / "mims.json"))
    assert bag.dtype == np.float32 and bag.shape == fed.shape
    np.testing.assert_array_equal(bag, fed)
