"""Export: SavedModel in TF Serving's layout (each variable stored once) and TFLite, both verified against Keras;
float32 copies."""

from mims_tf.export.saved_model import as_float32, export_saved_model, float32_copy
from mims_tf.export.tflite import export_tflite
from mims_tf.export.verify import VerificationError, verify_outputs

__all__ = ["VerificationError", "as_float32", "export_saved_model", "export_tflite", "float32_copy", "verify_outputs"]
