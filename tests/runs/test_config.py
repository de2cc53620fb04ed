import os
import re

import pytest
import yaml

from mims_tf.runs.config import RunConfig, load_config, save_config


def test_k_defaults_to_the_presets_own():
    assert "k" not in RunConfig.from_dict({"preset": "mims_top2"}).model_overrides()
    assert RunConfig.from_dict({"preset": "mims_top2"}).model_config(classes=2).k == 2
    assert RunConfig.from_dict({"preset": "mims_top2", "k": 4}).model_config(classes=2).k == 4


def test_bad_k_is_a_clear_error():
    with pytest.raises(ValueError, match="Received: k=0"):
        RunConfig.from_dict({"k": 0})


def test_local_weights_path_is_stored_absolute(tmp_path, monkeypatch):
    (tmp_path / "backbone.h5").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    config = RunConfig.from_dict({"model": {"weights": "backbone.h5"}})
    assert config.model["weights"] == str(tmp_path / "backbone.h5")  # a resume from another folder still finds it
    assert RunConfig.from_dict({"weights": "imagenet"}).model["weights"] == "imagenet"


def test_nested_and_flat_mappings_give_the_same_config():
    nested = RunConfig.from_dict({
        "model": {"preset": "mi_pre", "kernels": "crc"},
        "data": {"source": "synthetic", "image_size": [48, 32], "instances": [4, 6]},
        "training": {"epochs": 3, "learning_rate": 0.01},
        "seed": 2,
    })
    flat = RunConfig.from_dict({"preset": "mi_pre", "kernels": "crc", "data": "synthetic", "image_size": [48, 32],
                                "instances": [4, 6], "epochs": 3, "learning_rate": 0.01, "seed": 2})
    assert nested == flat
    assert nested.data.image_size == (48, 32) and nested.data.instances == (4, 6)
    assert RunConfig.from_dict({"image_size": 40}).data.image_size == (40, 40)
    model = nested.model_config(classes=3)
    assert (model.name, model.image_size, model.classes, model.backbone, model.kernels) == (
        "mi_pre", (48, 32), 3, "tiny", "crc")


def test_yaml_round_trip_is_nested(tmp_path):
    config = RunConfig.from_dict({"preset": "mims", "epochs": 2})
    save_config(config, tmp_path / "config.yaml")
    stored = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert set(stored) == {"model", "data", "training", "decision", "task", "seed", "precision", "strategy",
                           "deterministic", "out"}
    assert stored["decision"] == {"rule": "youden", "target": None}
    assert stored["training"]["epochs"] == 2 and stored["data"]["image_size"] == [64, 64]
    loaded = load_config(str(tmp_path / "config.yaml"))
    assert loaded.out == str(tmp_path / "runs" / "mims")  # a config file's relative paths: from its own folder
    loaded.out = config.out
    assert loaded == config


def test_overrides_apply_over_a_file(tmp_path):
    (tmp_path / "c.yaml").write_text("model: {preset: mi_pre}\ntraining: {epochs: 7}\n")
    config = load_config(str(tmp_path / "c.yaml"), {"training": {"learning_rate": 0.5}, "model": {"weights": None},
                                                    "seed": None})
    assert (config.preset, config.training.epochs, config.training.learning_rate, config.seed) == ("mi_pre", 7, 0.5, 0)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lerning_rate": 0.01}, "unknown config key 'lerning_rate'. Did you mean 'learning_rate'?"),
        ({"training": {"epoch": 3}}, "unknown config key training.'epoch'. Did you mean 'epochs'?"),
        ({"data": 123}, "`data` must be a mapping"),
        ({"model": {"image_size": 32}}, "`model.image_size` comes from the data"),
        ({"model": {"preset": "mimz"}}, "Unknown preset 'mimz'. Did you mean 'mims'?"),
        ({"model": {"pooling": "topK"}}, "Unknown pooling 'topK'. Did you mean 'topk'?"),
        ({"precision": "float8"}, "Received: precision='float8'"),
        ({"strategy": "mirorred"}, "Did you mean 'mirrored'?"),
        ({"epochs": 0}, "Received: epochs=0"),
        ({"image_size": [32]}, "Received: image_size=(32,)"),
        ({"learning_rate": float("nan")}, "Received: learning_rate=nan"),
        ({"learning_rate": -0.1}, "Received: learning_rate=-0.1"),
        ({"steps_per_epoch": 0}, "Received: steps_per_epoch=0"),
        ({"instances": 0}, "Received: instances=0"),
        # yes/no keys given as text: 'false' and 'no' are true in Python, so they trained the opposite setting
        ({"data": {"augment": "false"}},
         "`augment` must be true or false (unquoted in YAML). Received: augment='false'"),
        ({"one_bag_per_file": "no"}, "Received: one_bag_per_file='no'"),
        ({"replacement": "yes"}, "Received: replacement='yes'"),
        ({"allow_shared_groups": 1}, "Received: allow_shared_groups=1"),
        ({"deterministic": "false"}, "Received: deterministic='false'"),
        ({"split_fractions": [0.5, 0.5]}, "Received: split_fractions=[0.5, 0.5]"),
        ({"split_fractions": [2, -0.5, -0.5]}, "nonnegative"),
        ({"split_fractions": "abc"}, "`split_fractions` are (train, val, test)"),
        ({"split_fractions": [0.7, 0.15, float("nan")]}, "Received: split_fractions="),
        ({"model": {"kernels": {"a": 2}}}, "`kernels` maps kernel sizes to numbers of filters"),
    ],
)
def test_bad_config_is_one_clear_error(values, message):
    with pytest.raises(ValueError, match=None) as error:
        RunConfig.from_dict(values)
    assert message in str(error.value), str(error.value)


def test_a_task_sets_the_papers_settings_under_the_keys_given(tmp_path):
    oct_ = RunConfig.from_dict({"task": "oct"})
    assert (oct_.model["kernels"], oct_.model["backbone"], oct_.data.central, oct_.data.instances,
            oct_.data.image_size, oct_.training.batch_size) == ("oct", "resnet101", 30, (12, 18), (224, 224), 1)
    mine = RunConfig.from_dict({"task": "fundus", "image_size": 128, "model": {"backbone": "tiny", "weights": None}})
    assert mine.model["kernels"] == "fundus" and mine.data.image_size == (128, 128) and mine.model["backbone"] == "tiny"
    (tmp_path / "c.yaml").write_text("data: {image_size: 96}\n")
    flagged = load_config(str(tmp_path / "c.yaml"), {"task": "histology"})
    assert flagged.model["kernels"] == "crc" and flagged.data.image_size == (96, 96) and flagged.data.instances == 8
    with pytest.raises(ValueError, match="Unknown task 'retina'"):
        RunConfig.from_dict({"task": "retina"})


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-4 as the text '1e-4'; a config file means the number
    path = tmp_path / "c.yaml"
    path.write_text("training: {learning_rate: 1e-4, backbone_multiplier: 5E-1}\ndata: {memory_budget_gb: 2e0}\n"
                    "sensitivity: .9\n")
    config = load_config(str(path))
    assert config.training.learning_rate == 1e-4 and config.training.backbone_multiplier == 0.5
    assert config.data.memory_budget_gb == 2.0 and config.decision.target == 0.9
    # text stays text where text belongs, through a save and a load (class names "1e3" are not 1000.0)
    config = RunConfig.from_dict({"data": {"classes": ["1e3", "2e3"], "source": "1e5"}})
    save_config(config, str(tmp_path / "saved.yaml"))
    again = load_config(str(tmp_path / "saved.yaml"))
    assert again.data.classes == ["1e3", "2e3"] and os.path.basename(again.data.source) == "1e5"


def test_the_decision_block_holds_the_threshold_rule_and_an_older_sensitivity_key_is_read_into_it(tmp_path):
    config = RunConfig.from_dict({"decision": {"rule": "specificity", "target": 0.9}})
    assert (config.decision.rule, config.decision.target) == ("specificity", 0.9)
    (tmp_path / "old.yaml").write_text("model: {preset: mims}\nsensitivity: 0.95\n")  # a run before the block
    old = load_config(str(tmp_path / "old.yaml"))
    assert (old.decision.rule, old.decision.target) == ("sensitivity", 0.95)
    (tmp_path / "none.yaml").write_text("sensitivity: null\n")
    assert load_config(str(tmp_path / "none.yaml")).decision.rule == "youden"
    for bad, words in [({"rule": "sensitivity"}, "needs a target"),
                       ({"rule": "youden", "target": 0.9}, "takes no target"),
                       ({"rule": "sensitivity", "target": 1.5}, "must be in (0, 1]"), ({"rule": "f1"}, "rule")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            RunConfig.from_dict({"decision": bad})


def test_flat_keys_go_through_the_one_adapter():
    from mims_tf.runs.config import nest_flat

    assert nest_flat({"epochs": 3, "data": "x.csv", "preset": "mi_pre", "seed": 1, "sensitivity": 0.9}) == {
        "training": {"epochs": 3}, "data": {"source": "x.csv"}, "model": {"preset": "mi_pre"}, "seed": 1,
        "decision": {"rule": "sensitivity", "target": 0.9}}
    nested = {"training": {"epochs": 3}, "out": "o"}
    assert nest_flat(nested) == nested
    with pytest.raises(ValueError, match="unknown config key 'epoch'.*epochs"):
        nest_flat({"epoch": 3})


def test_every_train_flag_comes_from_the_schema():
    """Each flag of `mims train` is a config field with help in its metadata, and each such field is a flag:
    its name, key, parser, choices and help (with the default) are read from the field."""
    import dataclasses

    from mims_tf.cli.flags import train_flags
    from mims_tf.models.config import ModelConfig
    from mims_tf.runs.config import BLOCKS
    from mims_tf.runs.schema import MODEL_OPTIONS

    flags = {flag.key: flag for flag in train_flags()}
    fields = {f"{block}.{f.name}": f for block, kind in BLOCKS.items() for f in dataclasses.fields(kind)}
    fields.update({f.name: f for f in dataclasses.fields(RunConfig)})
    fields.update({f"model.{f.name}": f for f in dataclasses.fields(ModelConfig)})
    fields.update({f"model.{key}": f for key, f in MODEL_OPTIONS.items()})
    documented = {key for key, f in fields.items() if "help" in f.metadata}
    assert set(flags) == documented
    for key, flag in flags.items():
        meta = fields[key].metadata
        assert flag.dest == meta.get("flag", key.rsplit(".", 1)[-1])
        assert flag.help.startswith(meta["help"]) and flag.type is meta.get("type", str)
        assert flag.choices == meta.get("choices")
    assert flags["decision.rule"].choices == ("youden", "sensitivity", "specificity")
    assert flags["training.epochs"].help.endswith("; default 10")
    assert flags["model.weights"].type("None") is None and flags["model.weights"].type("imagenet") == "imagenet"


def test_a_config_files_relative_paths_resolve_from_its_own_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "m.csv").write_text("path,label\n")
    (folder / "run.yaml").write_text("data: m.csv\nout: runs/a\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "m.csv").write_text("path,label\n")  # another folder's m.csv is never picked up
    monkeypatch.chdir(elsewhere)
    config = load_config(str(folder / "run.yaml"), {"training": {"epochs": 2}})
    assert config.data.source == str(folder / "m.csv") and config.out == str(folder / "runs" / "a")
