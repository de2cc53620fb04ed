import keras
import numpy as np
import pytest

from mims_tf.layers import AttentionPooling, GlobalBagPooling, TopKPooling
from mims_tf.layers.bag_pooling import BagPooling
from tests.layers.harness import run_layer_test


@keras.saving.register_keras_serializable(package="mims_tf_tests")
class MinPooling(BagPooling):
    """A subclass written only against the base class's contract."""

    def pool(self, candidates):
        return keras.ops.min(candidates, axis=1)


def _scales(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(2, 3, h, h, 4)).astype("float32") for h in (1, 2, 3)]


def test_a_subclass_only_writes_pool():
    inputs = _scales()
    got = keras.ops.convert_to_numpy(MinPooling()(inputs))
    flat = np.concatenate([x.reshape(2, -1, 4) for x in inputs], axis=1)
    np.testing.assert_array_equal(got, flat.min(axis=1))
    run_layer_test(
        MinPooling,
        input_data=inputs,
        expected_output_shape=(2, 4),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_candidates_concatenate_every_position_instance_and_scale():
    inputs = _scales(1)
    layer = MinPooling()
    flat = np.concatenate([x.reshape(2, -1, 4) for x in inputs], axis=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.candidates(inputs)), flat)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.candidates(inputs[2])), inputs[2].reshape(2, -1, 4))
    assert layer.candidates_shape([x.shape for x in inputs]) == (2, 3 * (1 + 4 + 9), 4)
    assert layer.candidates_shape((None, None, 2, 2, 4)) == (None, None, 4)
    assert layer.compute_output_shape([(None, 3, 2, 2, 4), (None, 3, 1, 1, 4)]) == (None, 4)


@pytest.mark.parametrize("cls", [MinPooling, TopKPooling, GlobalBagPooling, AttentionPooling])
def test_shared_input_checks_name_the_layer(cls):
    kwargs = {"k": 1} if cls is TopKPooling else {}
    with pytest.raises(ValueError, match=f"{cls.__name__} expects .* at least one axis to pool. Received: input_shape"):
        cls(**kwargs)(keras.ops.ones((2, 3)))
    with pytest.raises(ValueError, match=f"{cls.__name__} expects the same, known number of channels"):
        cls(**kwargs)([keras.ops.ones((2, 3, 4)), keras.ops.ones((2, 3, 5))])
    with pytest.raises(ValueError, match="Expected a tensor or a list of tensors. Received"):
        cls(**kwargs).build({"x": (2, 3, 4)})


def test_the_base_class_alone_has_no_pooling():
    with pytest.raises(NotImplementedError, match="must implement `pool"):
        BagPooling()(keras.ops.ones((2, 3, 4)))
