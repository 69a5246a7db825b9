"""cocotb bench: the AXI4-Stream network (``hw gen --axis``) inside the HDL harness. The network bench's checks (every
class and score against the golden model), plus the framing: ``m_axis_tlast`` high and ``m_axis_tuser`` low on every
result word, ``frame_error`` never set (the harness frames every image right)."""

import json
import os
from pathlib import Path

import cocotb

from sim.benches import network_bench as _network  # a module, so its test is not collected twice


@cocotb.test()
async def axis_network_matches_golden(dut):
    await _network.network_matches_golden.func(dut)
    cfg = json.loads(Path(os.environ["LUTMAC_BENCH_CONFIG"]).read_text())
    flags = [line.split()[2] for line in Path("results.txt").read_text().splitlines() if line.strip()]
    bad = [(k, f) for k, f in enumerate(flags) if f != "100"]
    summary = json.loads(Path(cfg["summary"]).read_text())
    summary.update(
        interface="axis",
        axis_words=len(flags),
        axis_flag_errors=len(bad),
        axis_first_flag_error=(
            f"result {bad[0][0]}: tlast/tuser/frame_error = {bad[0][1]}, expected 100" if bad else None
        ),
    )
    Path(cfg["summary"]).write_text(json.dumps(summary, indent=2))
    assert not bad, summary["axis_first_flag_error"]
