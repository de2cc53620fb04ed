"""`mims presets`: the model presets, the paper's Table 1 and 2 rows."""


def presets_parser(sub):
    return sub.add_parser("presets", help="list the model presets (the paper's Table 1 and 2 rows)")


def run_presets(args):
    from mims_tf.models.config import PRESETS

    width = max(len(name) for name in PRESETS)
    for name, preset in PRESETS.items():
        tables = ", ".join(preset["metadata"]["tables"]) or "-"
        print(f"{name:<{width}}  {preset['metadata']['paper_name']}  ({tables})")
    return 0
