"""Work-arounds that let Keras 3.15 `fit` run under TensorFlow's MultiWorkerMirroredStrategy.

keras-team/keras#20585: the TF tutorial for multi-worker training fails with
Keras 3. Two places fail, both in `keras/src/backend/tensorflow/trainer.py`
(Keras 3.15.1, TensorFlow 2.21):

1. `fit` first "symbolically builds" the model from one distributed batch with
   `strategy.reduce("MEAN", batch, axis=None)`; under the collective all-reduce
   strategy this tries to turn the `PerReplica` batch into one tensor and fails
   ("Attempt to convert a value (PerReplica...) ... to a Tensor").
   Here the model is built from one local batch inside the strategy's scope,
   and that step is skipped (it only creates variables and metric state).
2. Every step reduces the per-replica logs with `strategy.reduce("MEAN", v,
   axis=0)`, which fails for scalar metrics ("Invalid reduction dimension 0 for
   input with 0 dimensions"). Here scalars are reduced with `axis=None`.
"""

import tensorflow as tf


def patch_keras_for_multi_worker(model, strategy, dataset):
    """Applies both work-arounds to `model` (and the Keras TF trainer module)."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    batch = next(iter(dataset))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    if getattr(tf_trainer.reduce_per_replica, "_mims_patched", False):
        return
    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if tf_trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
            def reduce(v):
                axis = None if v.shape.rank == 0 else 0
                return strategy.reduce("MEAN", v, axis=axis)

            return tf.nest.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._mims_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica
