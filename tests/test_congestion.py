"""fpga.congestion: router2 heatmaps summed per block, per net and per chip region."""

import pytest

from fpga import congestion


def write_iteration(build_dir, iteration, nets, grid):
    heat = build_dir / congestion.HEATMAP_DIR
    heat.mkdir(exist_ok=True)
    prefix = congestion.HEATMAP_PREFIX
    (heat / f"{prefix}_congestion_by_net_{iteration}.csv").write_text(
        "".join(f"{name},{value}\n" for name, value in nets.items()))
    (heat / f"{prefix}_congestion_by_coordinate_{iteration}.csv").write_text(
        "".join(",".join(map(str, row)) + ",\n" for row in grid))


NETS = {"rst": 5, "system.core.update_engine.front.sq.x[3]": 7, "system.core.update_engine.unit.y": 4,
        "system.core.data.dmem.bank_at_groups[0]": 9, "system.link.executor.z": 0}


def test_summary_sums_blocks_nets_and_regions(tmp_path):
    write_iteration(tmp_path, 1, {name: 2 * value for name, value in NETS.items()}, [[1, 2, 3], [4, 5, 6]])
    write_iteration(tmp_path, 2, NETS, [[1, 0, 0], [0, 0, 8], [2, 2, 0]])
    assert congestion.iterations(tmp_path) == [1, 2]
    text = congestion.summary(tmp_path, cell=2)
    assert "overuse by router iteration: 1: 50, 2: 25" in text
    assert "router iteration 2: overuse 25 over 4 nets" in text
    blocks = text.split("by block:")[1].split("worst nets:")[0].split()
    # update_engine's two nets (7 + 4) make the largest block, then dmem's one net, then the reset
    assert blocks[0::4][:3] == ["11", "9", "5"] and blocks[3] == "system.core.update_engine"
    assert "system.core.data" in blocks and "rst" in blocks
    regions = text.split("rows are x, columns y):")[1].split()
    assert regions == ["1", "8", "4", "0"]          # 2x2 squares: [[1,0,0,0],[0,8]], [[2,2],[0]]
    assert "overuse 50" in congestion.summary(tmp_path, iteration=1)


def test_summary_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="--heatmap"):
        congestion.summary(tmp_path)
    write_iteration(tmp_path, 3, NETS, [[0]])
    with pytest.raises(FileNotFoundError, match="iterations 3..3"):
        congestion.summary(tmp_path, iteration=7)
    assert congestion.main([str(tmp_path / "nowhere")]) == 1


def test_block_of():
    assert congestion.block_of("system.core.update_engine.front.sq.valid3") == "system.core.update_engine"
    assert congestion.block_of("rst") == "rst"
    assert congestion.block_of("system.core.update_engine.x", depth=2) == "system.core"
