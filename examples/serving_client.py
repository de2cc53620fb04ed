"""Ask a TF Serving server for the class probabilities of one bag (a volume or image file).

    # start TF Serving on an exported model (see `mims export --help`), then:
    python examples/serving_client.py scan.nii.gz --grpc localhost:8500
    python examples/serving_client.py scan.nii.gz --rest http://localhost:8501/v1/models/mims:predict
"""

import argparse

import numpy as np
import tensorflow as tf

from mims_tf.data import normalize_volume, read_volume
from mims_tf.export.serving import predict_grpc, predict_rest

parser = argparse.ArgumentParser()
parser.add_argument("file", help="a volume or image file (one bag)")
parser.add_argument("--grpc", help="host:port of the gRPC endpoint")
parser.add_argument("--rest", help="URL of the REST predict endpoint")
parser.add_argument("--image-size", type=int, default=64, help="the model's instance size")
parser.add_argument("--model-name", default="mims")
args = parser.parse_args()

volume = normalize_volume(read_volume(args.file).array.astype(np.float32), "auto")
if volume.ndim == 3:
    volume = np.repeat(volume[..., None], 3, axis=-1)
bag = tf.image.resize(volume, (args.image_size, args.image_size)).numpy()[None]  # (1, S, H, W, 3)
if args.grpc:
    print("gRPC:", predict_grpc(args.grpc, bag, model_name=args.model_name))
if args.rest:
    print("REST:", predict_rest(args.rest, bag))
