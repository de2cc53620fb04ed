"""A run's input contract (`mims_tf.data.contract`): recorded from the training split when a run starts, checked
on every bag that evaluate, predict and explain score.

A bag outside the contract is scored (a warning line naming the bag and what differs, and a column in the
output), or refused where the caller asks for `strict`: a model's probability says nothing about an input
unlike any it learned from (a CT volume given to a model of single ultrasound images).
"""

import logging
import os

from mims_tf.data import BagSource
from mims_tf.data.contract import InputContract, build_contract
from mims_tf.data.readers import readable_suffix, split_item
from mims_tf.runs.folder import RunFolder
from mims_tf.utils import read_json, write_json

logger = logging.getLogger("mims_tf")
SHOWN = 10  # bags named one line each; beyond, one line with the count


def raw_source(config, manifest, split):
    """The bags of a split as the contract sees them: central slices and normalisation applied, not resized,
    not kept."""
    data = config.data
    return BagSource(manifest, split, central=data.central, normalize=data.normalize, cache="none", progress=False)


def bag_suffix(bag):
    """The file suffix a bag was read from (`.npz`, `.nii.gz`, `` for a folder)."""
    return readable_suffix(split_item(bag.paths[0])[0]) if bag.paths else ""


def record_contract(run, config, manifest):
    """Builds the contract of the run's training split and stores it (`input_contract.json`); returns it."""
    run = RunFolder.of(run)
    source = raw_source(config, manifest, "train")
    contract = build_contract(((source.load(i), bag_suffix(bag)) for i, bag in enumerate(source.bags)),
                              central=config.data.central, normalize=config.data.normalize)
    write_json(run.contract_path, contract.to_dict())
    return contract


def run_contract(run):
    """The run's stored contract, or None for a run made before contracts were recorded."""
    path = RunFolder.of(run).contract_path
    if not os.path.isfile(path):
        return None
    try:
        return InputContract.from_dict(read_json(path))
    except ValueError as error:
        raise ValueError(f"{path}: {str(error).splitlines()[0]}; restore it, or delete it (the run's inputs are then "
                         "not checked)") from None


def check_source(run, config, source, strict=False):
    """`{bag id: [reasons]}` for the bags of `source` (a `BagSource` the run scores) outside the run's contract
    (empty where all are inside or the run has no contract). Logs one warning line per bag outside (the first
    `SHOWN`, then a count); with `strict`, raises `ValueError` naming the first instead."""
    contract = run_contract(run)
    if contract is None or not source.bags:
        return {}
    scored = {bag.bag for bag in source.bags}
    raw = raw_source(config, source.manifest, source.split)
    outside = {}
    for index, bag in enumerate(raw.bags):
        if bag.bag in scored:
            reasons = contract.check(raw.load(index), bag_suffix(bag))
            if reasons:
                if strict:
                    raise ValueError(f"{bag.bag}: outside the model's input contract: {'; '.join(reasons)}")
                outside[bag.bag] = reasons
    for number, (bag, reasons) in enumerate(outside.items()):
        if number == SHOWN:
            logger.warning("... and %d more bag(s) outside the input contract", len(outside) - SHOWN)
            break
        logger.warning("%s: unlike the bags the model was trained on: %s", bag, "; ".join(reasons))
    return outside
