import json
import os

import pytest

from mims_tf.utils import atomic_open, atomic_path, write_json, write_text


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "figure.png"
    with atomic_path(target, suffix=".png") as tmp:
        assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:
            f.write(b"data")
        assert not target.exists()  # nothing under the real name until the block ends
    assert target.read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["figure.png"]


def test_atomic_path_keeps_old_file_and_removes_tmp_on_error(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_open(target) as f:
            f.write("half a ta")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["table.md"]


def test_write_text_and_json(tmp_path):
    write_text(tmp_path / "a.txt", "line\n")
    write_json(tmp_path / "b.json", {"auroc": 0.5})
    assert (tmp_path / "a.txt").read_text() == "line\n"
    assert json.loads((tmp_path / "b.json").read_text()) == {"auroc": 0.5}
    with atomic_open(tmp_path / "c.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"


def test_progress_reports_with_time_left_at_most_every_interval_and_always_at_the_end(caplog):
    import logging

    from mims_tf.utils import Progress

    clock = iter([0.0, 0.1, 0.2, 1.0, 1.1, 2.0])  # start, then one reading per advance
    progress = Progress("reading bags", 5, interval=0.5)
    progress._clock = lambda: next(clock)
    progress._start = progress._last = progress._clock()
    with caplog.at_level(logging.INFO, logger="mims_tf"):
        for _ in range(5):
            progress.advance()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["reading bags: 3/5, 1 s left", "reading bags: 5/5, done in 2 s"]
    assert [r.progress for r in caplog.records] == [("reading bags", 3, 5), ("reading bags", 5, 5)]


def test_format_seconds():
    from mims_tf.utils import format_seconds

    assert [format_seconds(s) for s in (8.2, 75, 3725, float("nan"))] == ["8 s", "1 min 15 s", "1 h 2 min", "?"]


def test_orphaned_temporaries_of_killed_processes_are_removed_and_no_others(tmp_path):
    import subprocess
    import sys

    from mims_tf.utils import process_temporary, remove_orphans

    path = str(tmp_path / "features_0.npy")
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    mine = process_temporary(path)
    orphan = mine.replace(f"-{os.getpid()}.tmp", f"-{dead}.tmp")
    other_file = str(tmp_path / "features_1.npy") + orphan[len(path):]
    other_host = f"{path}.another-host-0-{dead}.tmp.npy"
    kept = str(tmp_path / "features_0.npy")
    for name in (mine, orphan, other_file, other_host, kept):
        open(name, "wb").close()
    remove_orphans(str(tmp_path))
    assert not os.path.exists(orphan) and not os.path.exists(other_file)  # killed processes of this host: gone
    assert all(os.path.exists(n) for n in (mine, other_host, kept))  # a live one's, another host's, a cache file


def test_atomic_writes_never_follow_a_planted_link_and_keep_plain_permissions(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "preds.csv"
    os.symlink(victim, str(target) + ".tmp")  # the fixed temporary name of earlier versions
    write_text(target, "new")
    assert victim.read_text() == "precious" and target.read_text() == "new" and not target.is_symlink()
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(target).st_mode & 0o777) == (0o666 & ~mask)
    with atomic_path(tmp_path / "a.txt") as one, atomic_path(tmp_path / "a.txt") as two:
        assert one != two  # two writers of one file never share a temporary


def test_a_yaml_alias_bomb_is_refused_before_it_is_built(tmp_path):
    from mims_tf.utils import read_yaml

    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(8):
        previous, name = chr(97 + i), chr(98 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")  # 9 ** 9 values from 400 bytes
    with pytest.raises(ValueError, match=r"bomb.yaml: expands to over 100,000 values through its aliases"):
        read_yaml(str(path))
    (tmp_path / "ok.yaml").write_text("base: &b {epochs: 3}\ntraining: *b\n")  # a plain anchor is fine
    assert read_yaml(str(tmp_path / "ok.yaml"))["training"] == {"epochs": 3}
