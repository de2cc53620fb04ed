"""Ask a TF Serving server for the class probabilities of one bag (a volume or image file).

    # start TF Serving on an exported model (see `mims export --help`), then:
    python examples/serving_client.py scan.nii.gz saved_models/adrenal/1 --grpc localhost:8500
    python examples/serving_client.py scan.nii.gz saved_models/adrenal/1 \
        --rest http://localhost:8501/v1/models/adrenal:predict --model-name adrenal

The file is prepared as the exported run prepared its bags (central slices, normalisation, image size,
channels: the export's metadata), so the server answers what `mims predict` answers; a file unlike the
run's training bags (its input contract) is named with what differs, as `mims predict` warns.
"""

import argparse
import sys

from mims_tf.data import read_volume
from mims_tf.data.readers import readable_suffix
from mims_tf.export.serving import check_input, predict_grpc, predict_rest, prepare_bag, read_metadata

parser = argparse.ArgumentParser()
parser.add_argument("file", help="a volume or image file (one bag)")
parser.add_argument("export", help="the exported SavedModel version folder (or the .json beside an export)")
parser.add_argument("--grpc", help="host:port of the gRPC endpoint")
parser.add_argument("--rest", help="URL of the REST predict endpoint")
parser.add_argument("--model-name", default="mims")
args = parser.parse_args()

metadata = read_metadata(args.export)
volume = read_volume(args.file).array
differs = check_input(volume, metadata, readable_suffix(args.file))
if differs:
    print(f"warning: {args.file}: unlike the bags the model was trained on: {'; '.join(differs)}", file=sys.stderr)
bag = prepare_bag(volume, metadata)  # (1, S, H, W, C)
print("classes:", metadata["classes"])
if args.grpc:
    print("gRPC:", predict_grpc(args.grpc, bag, model_name=args.model_name))
if args.rest:
    print("REST:", predict_rest(args.rest, bag))
