"""One shared check of a layer's Keras contract, after Keras's own `run_layer_test`.

`run_layer_test` builds the layer, calls it on concrete data and checks the
output shape(s) against `compute_output_shape` and the expected shape, the
weight counts, a JSON serialisation round trip, a save / load through a tiny
`keras.Model` in a `.keras` file and a run under the `mixed_bfloat16` dtype
policy. Numerical correctness is checked elsewhere (against `tests/reference.py`).
"""

import os
import tempfile

import keras
import numpy as np

from tests.conftest import roundtrip


def run_layer_test(
    layer_cls,
    init_kwargs=None,
    input_shape=None,
    input_data=None,
    expected_output_shape=None,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    expected_num_losses=None,
    supports_mixed_precision=True,
    mixed_precision_output_dtype=None,
    mixed_precision_tolerance=0.05,
    seed=0,
):
    """Checks shapes, weights, serialisation, saving and mixed precision of a layer.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of constructor arguments.
        input_shape: a shape tuple, or a list of shape tuples for a layer that
            takes a list of tensors; random normal data of that shape is used.
        input_data: a NumPy array or a list of arrays, instead of `input_shape`.
        expected_output_shape: the output shape, or a list of shapes for a
            layer that returns a list.
        expected_num_trainable_weights, expected_num_non_trainable_weights,
        expected_num_losses: expected counts after the first call, or None.
        supports_mixed_precision: run the layer with `dtype="mixed_bfloat16"`.
        mixed_precision_output_dtype: the dtype of the outputs under that policy;
            defaults to the policy's compute dtype (`"bfloat16"`); `"float32"`
            for a layer that computes in float32 itself.
        mixed_precision_tolerance: relative tolerance (of the largest absolute
            float32 output) of the bfloat16 outputs against the float32 ones.
        seed: seed of the random input data.

    Returns:
        The built float32 layer, for further checks.
    """
    init_kwargs = dict(init_kwargs or {})
    if (input_shape is None) == (input_data is None):
        raise ValueError("Give exactly one of `input_shape` and `input_data`.")
    if input_data is None:
        rng = np.random.default_rng(seed)
        shapes = input_shape if _is_list_of_shapes(input_shape) else None
        input_data = (
            [rng.normal(size=s).astype("float32") for s in shapes]
            if shapes is not None
            else rng.normal(size=input_shape).astype("float32")
        )
    multi_input = isinstance(input_data, (list, tuple))
    input_shapes = [x.shape for x in input_data] if multi_input else input_data.shape

    # Eager call: output shapes against `compute_output_shape` and the expectation.
    layer = layer_cls(**init_kwargs)
    outputs = layer(input_data)
    got_shapes = _shapes(outputs)
    computed = _shapes(layer.compute_output_shape(input_shapes))
    assert got_shapes == computed, f"output shape {got_shapes} != compute_output_shape {computed}"
    if expected_output_shape is not None:
        expected = _shapes(expected_output_shape)
        assert got_shapes == expected, f"output shape {got_shapes} != expected {expected}"

    # Weight and loss counts.
    if expected_num_trainable_weights is not None:
        got = len(layer.trainable_weights)
        assert got == expected_num_trainable_weights, (
            f"{got} trainable weights, expected {expected_num_trainable_weights}"
        )
    if expected_num_non_trainable_weights is not None:
        got = len(layer.non_trainable_weights)
        assert got == expected_num_non_trainable_weights, (
            f"{got} non-trainable weights, expected {expected_num_non_trainable_weights}"
        )
    if expected_num_losses is not None:
        assert len(layer.losses) == expected_num_losses, f"{len(layer.losses)} losses, expected {expected_num_losses}"

    # Symbolic call: the same output shapes.
    symbolic_inputs = (
        [keras.Input(batch_shape=s) for s in input_shapes] if multi_input else keras.Input(batch_shape=input_shapes)
    )
    symbolic_outputs = layer(symbolic_inputs)
    assert _shapes(symbolic_outputs) == got_shapes, f"symbolic output shape {_shapes(symbolic_outputs)} != {got_shapes}"

    # Every constructor argument is stored under its own name and is in the config.
    config = layer.get_config()
    for key in init_kwargs:
        assert hasattr(layer, key), f"argument {key!r} is not stored as `layer.{key}`"
        assert key in config, f"argument {key!r} is missing from get_config()"

    # JSON round trip (config equality is asserted by `roundtrip`), same weights, same outputs.
    clone = roundtrip(layer)
    assert clone.built, "the serialised layer carries its build config"
    clone.set_weights(layer.get_weights())
    _assert_same(clone(input_data), outputs)

    # Save and load through a tiny functional model in a `.keras` file.
    model = keras.Model(symbolic_inputs, symbolic_outputs)
    _assert_same(model(input_data), outputs)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    loaded_layer = loaded.get_layer(layer.name)
    assert type(loaded_layer) is layer_cls
    assert loaded_layer.get_config() == layer.get_config()
    _assert_same(loaded(input_data), outputs)

    # Mixed precision as a per-layer dtype policy (the global policy stays float32).
    if supports_mixed_precision:
        mixed = layer_cls(**{**init_kwargs, "dtype": "mixed_bfloat16"})
        mixed.build(input_shapes)
        mixed.set_weights(layer.get_weights())
        assert all(
            keras.backend.standardize_dtype(w.dtype) == "float32" for w in mixed.weights
        ), "variables stay float32 under mixed precision"
        mixed_outputs = mixed(input_data)
        dtype = mixed_precision_output_dtype or mixed.compute_dtype
        for got, want in zip(keras.tree.flatten(mixed_outputs), keras.tree.flatten(outputs)):
            got_dtype = keras.backend.standardize_dtype(got.dtype)
            assert got_dtype == dtype, f"output dtype {got_dtype} under mixed_bfloat16, expected {dtype}"
            got = keras.ops.convert_to_numpy(keras.ops.cast(got, "float32"))
            want = keras.ops.convert_to_numpy(want)
            scale = max(float(np.abs(want).max()), 1.0)
            np.testing.assert_allclose(got, want, rtol=0, atol=mixed_precision_tolerance * scale)
        assert _shapes(mixed_outputs) == got_shapes
    return layer


def _is_list_of_shapes(shape):
    return isinstance(shape, (list, tuple)) and len(shape) > 0 and isinstance(shape[0], (list, tuple))


def _shapes(structure):
    """Shape tuple(s) of a tensor, a shape, or a list of either."""
    if _is_list_of_shapes(structure) or (
        isinstance(structure, (list, tuple)) and structure and hasattr(structure[0], "shape")
    ):
        return [_shapes(s) for s in structure]
    if hasattr(structure, "shape"):
        return tuple(structure.shape)
    return tuple(structure)


def _assert_same(got, want, atol=1e-6):
    got, want = keras.tree.flatten(got), keras.tree.flatten(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(g), keras.ops.convert_to_numpy(w), rtol=1e-6, atol=atol)
