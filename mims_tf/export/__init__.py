"""Export: SavedModel in TF Serving's layout (each variable stored once), TFLite, float32 copies."""

from mims_tf.export.saved_model import export_saved_model, float32_copy
from mims_tf.export.tflite import export_tflite

__all__ = ["export_saved_model", "export_tflite", "float32_copy"]
