import keras
import numpy as np
import pytest

from mims_tf.layers import FoldInstances, UnfoldInstances
from tests.layers.harness import run_layer_test


def test_fold_then_unfold_restores_bags():
    bags = np.random.default_rng(0).normal(size=(2, 3, 4, 5, 1)).astype("float32")
    folded = FoldInstances()(bags)
    assert keras.ops.shape(folded) == (6, 4, 5, 1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(folded)[4], bags[1, 1])
    features = keras.ops.convert_to_tensor(np.arange(6 * 2, dtype="float32").reshape(6, 2))
    unfolded = keras.ops.convert_to_numpy(UnfoldInstances()([features, bags]))
    assert unfolded.shape == (2, 3, 2)
    np.testing.assert_array_equal(unfolded[1, 0], [6, 7])


def test_layer_contract():
    run_layer_test(
        FoldInstances,
        input_shape=(2, 3, 8, 8, 1),
        expected_output_shape=(6, 8, 8, 1),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )
    run_layer_test(
        UnfoldInstances,
        input_shape=[(6, 4, 4, 5), (2, 3, 8, 8, 1)],
        expected_output_shape=(2, 3, 4, 4, 5),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_dynamic_shapes_and_errors():
    assert FoldInstances().compute_output_shape((None, None, 8, 8, 1)) == (None, 8, 8, 1)
    assert UnfoldInstances().compute_output_shape([(None, 4), (None, None, 8, 8, 1)]) == (None, None, 4)
    with pytest.raises(ValueError, match="Received: input_shape"):
        FoldInstances()(keras.ops.ones((2, 8, 8, 1)))


def test_unfold_refuses_inputs_other_than_x_and_bags():
    layer = UnfoldInstances()
    for shapes in ((6, 4), [(6,), (2,)], [(6, 4), (2,)], [(6, 4)], [(), (2, 3, 8, 8, 1)]):
        with pytest.raises(ValueError, match=r"expects \[x, bags\].*Received: input_shape"):
            layer.compute_output_shape(shapes)
    with pytest.raises(ValueError, match=r"expects \[x, bags\]"):
        UnfoldInstances()(keras.ops.ones((6, 4)))
    with pytest.raises(ValueError, match=r"expects \[x, bags\]"):
        UnfoldInstances()([keras.Input((4, 4, 3)), keras.Input(())])


def test_a_bag_of_no_instances_is_one_clear_error():
    from mims_tf.models import build_model

    model = build_model("mims", backbone="tiny", weights=None, image_size=(16, 16))
    empty = np.zeros((1, 0, 16, 16, 3), np.float32)
    for call in (lambda: model(empty), lambda: model.predict(empty, verbose=0)):
        with pytest.raises(ValueError, match=r"A bag needs at least one instance. Received: a bag of shape \(1, 0, 16"):
            call()
