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


def test_grpc_client_gets_the_same_probabilities_as_mims_predict(tmp_path):
    from mims_tf.export.serving import predict_grpc, rest_body
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.predict import predict
    from mims_tf.runs.export import export_run
    from mims_tf.runs.fit import train

    run = str(tmp_path / "run")
    train(RunConfig.from_dict(dict(out=run, epochs=1, batch_size=8, image_size=32, instances=4)), verbose=0)
    exported = export_run(run, "saved_model", out=str(tmp_path / "saved_models"))["path"]  # calibrated, as predict
    volume = np.random.default_rng(0).uniform(0, 255, (5, 32, 32)).astype(np.float32)
    np.save(tmp_path / "scan.npy", volume)
    expected = predict(run, [str(tmp_path / "scan.npy")], out=str(tmp_path / "p.csv"))[0]["probabilities"]

    service = PredictionService(exported, "mims")
    try:
        from mims_tf.data import BagSource, from_rows, make_dataset

        source = BagSource(from_rows([{"path": str(tmp_path / "scan.npy"), "label": "0"}]), progress=False)
        bag = next(iter(make_dataset(source, False, image_size=(32, 32))))[0].numpy()  # what mims predict feeds
        got = predict_grpc(f"127.0.0.1:{service.port}", bag, model_name="mims")
        with pytest.raises(grpc.RpcError, match="Servable not found"):
            predict_grpc(f"127.0.0.1:{service.port}", bag, model_name="other")
    finally:
        service.server.stop(None)
    np.testing.assert_allclose(got[0], [expected["0"], expected["1"]], atol=1e-5)
    assert '"signature_name": "serving_default"' in rest_body(bag)
