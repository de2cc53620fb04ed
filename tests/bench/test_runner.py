import csv
import logging
import os

import pytest

from mims_tf.bench.runner import bench, record_bag_size, verify, write_summary
from tests.conftest import SHARED, requires_tensorflow

DATA_ROOT = os.path.join(SHARED, "data")


@pytest.mark.slow
@requires_tensorflow()
def test_bench_writes_results_and_skips_what_is_done(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mims_tf")
    options = dict(out=str(tmp_path / "results"), work=str(tmp_path / "work"), seeds=(0,),
                   presets=["mi_pre", "mims"], image_size=32, epochs=1, batch_size=32, command="mims bench test",
                   data_root=DATA_ROOT)
    folder = bench("table1", "breastmnist", **options)
    rows = list(csv.DictReader(open(f"{folder}/results.csv")))
    assert [(r["preset"], r["seed"]) for r in rows] == [("mi_pre", "0"), ("mims", "0")]
    table = open(f"{folder}/table.md").read()
    assert "command: `mims bench test`" in table and "| `mims` | MIMS |" in table
    assert open(f"{folder}/table.png", "rb").read(4) == b"\x89PNG"
    summary = open(tmp_path / "results" / "summary.md").read()  # beside the paper, in its row order
    mims_row = next(line for line in summary.splitlines() if line.startswith("| MIMS |"))
    assert mims_row.startswith("| MIMS | 0.986 | 1.000 | 0.972 | 0.901 | 0.965 | ") and "not run" not in mims_row
    assert summary.index("| MI-Pre |") < summary.index("| MIMS |") and "`breastmnist`" in summary
    assert "| *bag size alone, no model* | / | / | / | / | / | 0.500 |" in summary  # every bag is one image
    assert "all bags have one size" in table
    assert "[bench] table1 breastmnist: mims seed 0" in caplog.text  # progress goes to the mims_tf logger
    assert rows[0]["environment"] and "Code and machine of the rows" in table  # provenance per row
    scores = list(csv.DictReader(open(f"{folder}/scores/mims_s0.csv")))  # per test bag, for paired tests
    assert len(scores) == 156 and set(scores[0]) == {"bag", "label", "score"}
    paired = next(line for line in table.splitlines() if line.startswith("| `mi_pre` | 1 | "))
    assert paired.split("|")[5].strip() in ("beats", "ties", "loses")
    assert "one test set, bags resampled jointly" in table
    assert "- `breastmnist`, paired 95 % intervals (its table.md): `mims` " in summary
    checks = verify("table1", "breastmnist", 1, out=options["out"], work=options["work"], data_root=DATA_ROOT,
                    image_size=32, epochs=1, batch_size=32)
    assert len(checks) == 1 and checks[0]["verdict"] == "identical", checks  # same machine, same code
    assert checks[0]["environment"] == rows[0]["environment"]
    caplog.clear()
    bench("table1", "breastmnist", **options)  # everything done: nothing retrained
    assert "[bench]" not in caplog.text


@pytest.mark.slow
@requires_tensorflow()
def test_bench_keeps_each_presets_k_and_tags_the_folder(tmp_path):
    import keras

    from mims_tf.layers import TopKPooling

    folder = bench("table2", "breastmnist", out=str(tmp_path / "results"), work=str(tmp_path / "work"), seeds=(0,),
                   presets=["mims_top2"], image_size=32, epochs=1, batch_size=64, tag="small", command="mims bench t",
                   data_root=DATA_ROOT)
    assert folder.endswith("table2_breastmnist_small")
    model = keras.saving.load_model(str(tmp_path / "work" / "table2_breastmnist_small" / "mims_top2_s0" / "best.keras"))
    assert [layer.k for layer in model.layers if isinstance(layer, TopKPooling)] == [2]


@pytest.mark.slow
@requires_tensorflow()
def test_a_failing_preset_does_not_stop_the_others(tmp_path, caplog):
    # At 8x8 the tiny backbone gives 1x1 positions, 2 with the two MSConv scales: k=5 cannot fit, k=2 can.
    options = dict(out=str(tmp_path / "results"), work=str(tmp_path / "work"), seeds=(0,), image_size=8, epochs=1,
                   batch_size=64, command="mims bench t", data_root=DATA_ROOT)
    with pytest.raises(RuntimeError, match=r"1 run\(s\) failed.*mims_top5 seed 0"):
        bench("table2", "breastmnist", presets=["mims_top5", "mims_top2"], **options)
    rows = list(csv.DictReader(open(tmp_path / "results" / "table2_breastmnist" / "results.csv")))
    assert [r["preset"] for r in rows] == ["mims_top2"]
    assert "[bench] mims_top5 seed 0 failed: k=5 is larger" in caplog.text


@pytest.mark.slow
@requires_tensorflow()
def test_runs_that_all_fail_alike_stop_the_bench_and_leave_no_budget_behind(tmp_path):
    # 2D images are bags of one instance: a range up to 500 a step cannot batch; only the data shows it
    options = dict(out=str(tmp_path / "results"), work=str(tmp_path / "work"), seeds=(0,), image_size=32, epochs=1,
                   batch_size=8, instances=(2, 500), command="mims bench t", data_root=DATA_ROOT)
    with pytest.raises(RuntimeError, match="every run so far failed alike.*fewer than 500 instances"):
        bench("table1", "breastmnist", presets=["mims", "mi_pre", "si_cnn"], **options)
    assert not (tmp_path / "results" / "table1_breastmnist" / "settings.json").exists()


@requires_tensorflow()
def test_bag_size_baseline_scores_the_instance_count_per_test_bag(tmp_path):
    from mims_tf.data import from_rows, write_manifest
    from mims_tf.runs.config import RunConfig, save_config

    # Class "msi" (second, the positive class of the run) has bigger test bags: bag size alone separates them.
    rows = [{"path": f"{bag}_{i}.png", "label": label, "bag": bag, "split": "test"}
            for bag, label, size in [("a", "mss", 1), ("b", "mss", 2), ("c", "msi", 3), ("d", "msi", 5)]
            for i in range(size)]
    for seed, order in [(0, ["mss", "msi"]), (1, ["msi", "mss"])]:
        run = tmp_path / "work" / f"mims_s{seed}"
        run.mkdir(parents=True)
        write_manifest(from_rows(rows, classes=order), run / "manifest.csv")
        save_config(RunConfig.from_dict(dict(classes=order)), str(run / "config.yaml"))
    folder = tmp_path / "results" / "table2_kather"
    folder.mkdir(parents=True)
    assert record_bag_size(str(folder), str(tmp_path / "work")) == [1.0, 0.0]  # positive class as in each run
    sizes = [(r["min_size"], r["max_size"]) for r in csv.DictReader(open(folder / "bag_size.csv"))]
    assert sizes == [("1", "5"), ("1", "5")]
    (folder / "results.csv").write_text("preset,seed,val_auroc,test_auroc,test_accuracy,seconds\n"
                                        "mims_top5,0,0.5,0.5,0.5,1\n")
    summary = write_summary(str(tmp_path / "results"))
    assert "| *bag size alone, no model* | / | 0.500 +- 0.707 |" in summary


def test_bench_needs_a_data_root_and_known_names(tmp_path):
    with pytest.raises(ValueError, match="Unknown table 'table3'. Did you mean"):
        bench("table3", "breastmnist", data_root=DATA_ROOT)
    with pytest.raises(ValueError, match="Unknown dataset 'breastmnst'. Did you mean 'breastmnist'?"):
        bench("table1", "breastmnst", data_root=DATA_ROOT)
    with pytest.raises(ValueError, match="`data_root` is required"):
        bench("table1", "breastmnist")
    with pytest.raises(ValueError, match="data set breastmnist not found \\(expected .*breastmnist.npz\\)"):
        bench("table1", "breastmnist", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="data set breastmnist not found"):
        verify("table1", "breastmnist", 1, data_root=str(tmp_path))


@pytest.mark.slow
def test_committed_tables_regenerate_byte_identical_from_their_results(tmp_path):
    import shutil

    from mims_tf.bench import regenerate

    results = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "results")
    for name in sorted(os.listdir(results)):
        if not name.startswith("table"):
            continue
        copy = tmp_path / name
        shutil.copytree(os.path.join(results, name), copy)
        regenerate(str(copy))
        assert (copy / "table.md").read_bytes() == open(os.path.join(results, name, "table.md"), "rb").read(), name
    shutil.copy(os.path.join(results, "summary.md"), tmp_path / "committed_summary.md")
    write_summary(str(tmp_path))
    assert (tmp_path / "summary.md").read_text() == (tmp_path / "committed_summary.md").read_text()


def test_rows_from_other_machines_are_flagged():
    from mims_tf.bench.report import provenance_lines

    rows = [{"preset": "mims", "seed": "0", "environment": "abc, Intel Xeon"},
            {"preset": "mims", "seed": "1", "environment": "abc, AMD EPYC"},
            {"preset": "mi_pre", "seed": "0", "environment": "abc, AMD EPYC"}]
    text = "\n".join(provenance_lines(rows, ["mi_pre", "mims"]))
    assert "- abc, AMD EPYC: 2 rows" in text and "- abc, Intel Xeon: 1 row" in text
    assert "Presets whose seeds mix them: `mims`." in text
    assert provenance_lines([{"preset": "mims", "seed": "0"}], ["mims"]) == []  # old rows: the table as before


def test_a_results_folder_refuses_rows_of_another_budget(tmp_path):
    from mims_tf.bench.runner import _check_budget
    from mims_tf.utils import write_json

    budget = _check_budget(str(tmp_path), {"epochs": 15, "image_size": 96}, fresh=False)
    assert not (tmp_path / "settings.json").exists()  # written with the first result, not before
    write_json(str(tmp_path / "settings.json"), budget)  # as bench does with its first result
    _check_budget(str(tmp_path), {"epochs": 15, "image_size": 96}, fresh=False)  # the same: fine
    with pytest.raises(ValueError, match="were made with settings"):
        _check_budget(str(tmp_path), {"epochs": 5, "image_size": 96}, fresh=False)
    _check_budget(str(tmp_path), {"epochs": 5}, fresh=True)  # redone from scratch: the new budget


def test_tiles_name_their_patients_for_the_paired_bootstrap():
    from mims_tf.bench.report import patients

    tiles = ["blk-AAA-TCGA-CM-4746-01Z-00-DX1", "blk-BBB-TCGA-cm-4746-01Z-00-DX1", "blk-CCC-TCGA-F4-6703-01Z-00-DX1"]
    assert patients(tiles) == ["TCGA-CM-4746", "TCGA-CM-4746", "TCGA-F4-6703"]
    assert patients(["TCGA-CM-4746", "TCGA-F4-6703"]) is None  # one bag per patient: the bags are the patients
    assert patients(["train_images/0", "train_images/1"]) is None


def test_a_fixed_bag_size_figure_leads_its_summary_cell(tmp_path):
    import shutil

    from mims_tf.bench.report import fixed_bag_cells

    results = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "results")
    name = "table1_kather-crc-msi_pretrained"
    assert fixed_bag_cells(os.path.join(results, name))["mims"] == (4, "0.546 +- 0.169")
    shutil.copytree(os.path.join(results, name), tmp_path / name)
    summary = write_summary(str(tmp_path))
    assert "| MIMS | " in summary and "0.546 +- 0.169 (4 per bag; whole bags 0.479 +- 0.136) |" in summary
    assert "**0.650 +- 0.086** (4 per bag" in summary  # the best of the fixed-size figures is the bold one


def test_table2_is_compared_with_mims_own_pooling():
    """Table 2 has no `mims` row: its `mims_top5` is the same model (top-k, k = 5), so it is the reference."""
    from mims_tf.bench.report import reference_of
    from mims_tf.bench.tables import TABLES
    from mims_tf.models.config import get_preset

    assert reference_of(TABLES["table1"]) == "mims"
    assert reference_of(TABLES["table2"]) == "mims_top5"
    assert get_preset("mims_top5").replace(name="mims").to_dict() == get_preset("mims").to_dict()


def test_kather_runs_as_folds_in_a_folder_of_its_own():
    from mims_tf.bench.runner import results_name
    from mims_tf.bench.tables import DATASETS

    for name in ("kather-crc-msi", "kather-crc-msi-tiles"):  # no split of its own: 5 patient-grouped folds
        assert DATASETS[name][1]["folds"] == 5
        assert results_name("table1", name) == f"table1_{name}_folds5"
    assert results_name("table1", "breastmnist", "small") == "table1_breastmnist_small"  # official splits: one


@pytest.mark.slow
@requires_tensorflow()
def test_a_data_set_run_as_folds_reports_out_of_fold_validation_and_the_ensemble_on_test(tmp_path, monkeypatch):
    from mims_tf.bench import runner, tables

    path, settings = tables.DATASETS["breastmnist"]
    monkeypatch.setitem(tables.DATASETS, "breastmnist", (path, {**settings, "folds": 2}))
    folder = bench("table1", "breastmnist", out=str(tmp_path / "results"), work=str(tmp_path / "work"), seeds=(0,),
                   presets=["mi_pre"], image_size=32, epochs=1, batch_size=64, command="mims bench t",
                   data_root=DATA_ROOT)
    assert folder.endswith("table1_breastmnist_folds2") and runner.results_name("table1", "breastmnist").endswith(
        "_folds2")
    row = next(csv.DictReader(open(f"{folder}/results.csv")))
    run = tmp_path / "work" / "table1_breastmnist_folds2" / "mi_pre_s0"
    oof = __import__("json").load(open(run / "decision.json"))["best"]["val_auroc"]
    assert float(row["val_auroc"]) == pytest.approx(oof, abs=1e-4) and (run / "fold_2" / "best.keras").is_file()
    assert 0 <= float(row["test_auroc"]) <= 1
