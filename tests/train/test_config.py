import pytest

from mims_tf.train.config import TrainConfig


def test_k_defaults_to_the_presets_own():
    assert TrainConfig(preset="mims_top2").model_overrides() == {}
    assert TrainConfig(preset="mims_top2", k=4).model_overrides() == {"k": 4}


def test_bad_k_is_a_clear_error():
    with pytest.raises(ValueError, match="Received: k=0"):
        TrainConfig.from_dict({"k": 0})


def test_local_weights_path_is_stored_absolute(tmp_path, monkeypatch):
    (tmp_path / "backbone.h5").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.from_dict({"weights": "backbone.h5"})
    assert config.weights == str(tmp_path / "backbone.h5")  # a resume from another folder still finds it
    assert TrainConfig.from_dict({"weights": "imagenet"}).weights == "imagenet"
