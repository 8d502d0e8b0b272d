"""golden_model.trace writes the recorded step's tensors, equal to a re-run of the same step."""

import numpy as np

from golden_model.trace import main, record_step


def test_trace_cli_writes_npz(tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert main(["--seed", "1", "--batch", "4", "--step", "2", "-o", str(out)]) == 0
    saved = np.load(out)
    again = record_step("default", seed=1, batch=4, step=2).arrays()
    assert sorted(saved.files) == sorted(again)
    for name in again:
        assert np.array_equal(saved[name], again[name]), name
    assert any(name.endswith("fc1_update/out/w/q") for name in saved.files)
    assert saved[next(n for n in saved.files if n.endswith("/q"))].dtype == np.int8
    assert "ops" in capsys.readouterr().out


def test_different_steps_differ():
    first = record_step("default", seed=0, batch=4, step=0).arrays()
    later = record_step("default", seed=0, batch=4, step=3).arrays()
    key = next(name for name in first if name.endswith("fc1_forward/in/x/q"))
    assert not np.array_equal(first[key], later[key])
