"""golden_model.trace writes the recorded step's tensors; checked against expectations derived by hand:
the batch the data order picks, the dataflow between ops, and the integer arithmetic of two ops."""

import numpy as np

from golden_model.data import load_digits_split
from golden_model.trace import main, record_step

SEED, BATCH, STEP = 1, 4, 2
LR_SHIFT = 6                  # default_lr_shift for the MLP at batch 4 (below 8)


def tensor(saved, op: str, direction: str, name: str) -> tuple[np.ndarray, int]:
    prefix = next(key for key in saved.files if key.split("/")[0].endswith(op) and
                  key.endswith(f"/{direction}/{name}/q"))
    return saved[prefix].astype(np.int64), int(saved[prefix[:-1] + "exp"])


def test_trace_cli_writes_npz(tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert main(["--seed", str(SEED), "--batch", str(BATCH), "--step", str(STEP), "-o", str(out)]) == 0
    saved = np.load(out)
    ops = sorted({key.split("/")[0] for key in saved.files})
    assert f"{len(ops)} ops" in capsys.readouterr().out
    assert all(saved[key].dtype == (np.int8 if key.endswith("/q") else np.int64) for key in saved.files)

    # the batch: step 2 of batch 4 is items 8..11 of the seed's first permutation, pixels * 8 on 2**-7
    digits = load_digits_split()
    idx = np.random.default_rng(SEED).permutation(len(digits.train_y))[STEP * BATCH:(STEP + 1) * BATCH]
    x, x_exp = tensor(saved, "fc1_forward", "in", "x")
    assert x_exp == -7 and x.tolist() == np.minimum(digits.train_x[idx] * 8, 127).tolist()

    # the dataflow: each op reads what the op before it wrote, and updates the weights the step used
    assert np.array_equal(tensor(saved, "fc2_forward", "in", "x")[0], tensor(saved, "fc1_forward", "out", "y")[0])
    assert np.array_equal(tensor(saved, "fc_out_forward", "in", "x")[0],
                          tensor(saved, "residual_forward", "out", "y")[0])
    for layer in ("fc1", "fc2", "fc3", "fc_out"):
        assert np.array_equal(tensor(saved, f"{layer}_update", "in", "w")[0], tensor(saved, f"{layer}_forward", "in", "w")[0])
        assert np.array_equal(tensor(saved, f"{layer}_update", "in", "g")[0], tensor(saved, f"{layer}_gradient", "out", "g")[0])

    # fc1 forward: y = SQ(relu(x . W^T)), nearest rounding, shift max(0, bit_length(max) - 7)
    w, w_exp = tensor(saved, "fc1_forward", "in", "w")
    y, y_exp = tensor(saved, "fc1_forward", "out", "y")
    acc = np.maximum(x @ w.T, 0)
    shift = max(0, int(acc.max()).bit_length() - 7)
    assert y_exp == x_exp + w_exp + shift
    assert y.min() >= 0 and y.max() <= 127 and np.all(np.abs(y * 2**shift - acc) <= 2**shift // 2)

    # fc1 update: W - G * 2**(eG - lr - eW), stochastically rounded: within one step either way
    g, g_exp = tensor(saved, "fc1_update", "in", "g")
    new_w, new_exp = tensor(saved, "fc1_update", "out", "w")
    exact = w - g * 2.0 ** (g_exp - LR_SHIFT - w_exp)
    assert new_exp == w_exp and np.all(np.abs(new_w - np.clip(exact, -127, 127)) < 1)
    assert not np.array_equal(new_w, w)


def test_different_steps_differ():
    first = record_step("default", seed=0, batch=4, step=0).arrays()
    later = record_step("default", seed=0, batch=4, step=3).arrays()
    key = next(name for name in first if name.endswith("fc1_forward/in/x/q"))
    assert not np.array_equal(first[key], later[key])
