import numpy as np

from mims_tf.models import build_model
from tests.conftest import requires_tensorflow


@requires_tensorflow()
def test_saved_model_export_keeps_dynamic_instances_and_image_size(tmp_path):
    import tensorflow as tf

    model = build_model("mims", backbone="tiny", weights=None)
    path = str(tmp_path / "saved")
    model.export(path, format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(path).signatures["serving_default"]
    spec = served.structured_input_signature[1]["bags"]
    assert spec.shape.as_list() == [None, None, None, None, 3]
    rng = np.random.default_rng(0)
    for shape in [(1, 2, 24, 24, 3), (3, 7, 24, 24, 3), (2, 4, 40, 32, 3)]:
        x = rng.uniform(0, 255, size=shape).astype("float32")
        (out,) = served(bags=tf.constant(x)).values()
        np.testing.assert_allclose(out.numpy(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
