"""The paper-table bench: tables as data (`tables`), a resumable runner (`runner`), reports (`report`).

    from mims_tf.bench import bench
    bench("table1", "breastmnist", data_root="../shared/data", image_size=96, epochs=15)
"""

from mims_tf.bench.report import regenerate, write_summary
from mims_tf.bench.runner import bench, record_bag_size, verify
from mims_tf.bench.tables import DATASETS, PAPER, TABLES

__all__ = ["DATASETS", "PAPER", "TABLES", "bench", "record_bag_size", "regenerate", "verify", "write_summary"]
