"""cocotb bench: one sign-flip adder tree (``python -m hw pe``) against the golden arithmetic, random and extreme
vectors. Configured by the JSON file named in ``LUTMAC_BENCH_CONFIG``."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer


@cocotb.test()
async def pe_matches_golden(dut):
    cfg = json.loads(Path(os.environ["LUTMAC_BENCH_CONFIG"]).read_text())
    lanes, bits, latency = cfg["lanes"], cfg["bits"], cfg["latency"]
    rng = np.random.default_rng(cfg.get("seed", 0))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if cfg.get("signed") else (0, (1 << bits) - 1)
    cases = [(rng.integers(lo, hi + 1, lanes), rng.integers(0, 2, lanes)) for _ in range(cfg.get("vectors", 200))]
    cases += [(np.full(lanes, x), np.full(lanes, w)) for x in (lo, hi) for w in (0, 1)]
    cases += [(np.full(lanes, x), np.arange(lanes) % 2) for x in (lo, hi)]
    if latency:
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        dut.en.value = 1
        await ClockCycles(dut.clk, 2)  # the edge at time 0 may latch X before combinational logic settles
        dut.rst.value = 0
    bad = []
    for x, w in cases:
        dut.x.value = sum((int(v) & ((1 << bits) - 1)) << (bits * i) for i, v in enumerate(x))
        dut.w.value = sum(int(b) << i for i, b in enumerate(w))
        if latency:
            await ClockCycles(dut.clk, latency)
            await ReadOnly()
        else:
            await Timer(1, unit="ns")
        expected = int(np.sum(np.where(w == 1, x, -x)))
        if cfg.get("corrupt"):
            expected += 1
        got = dut.total.value.to_signed()
        if latency:
            await RisingEdge(dut.clk)
        if got != expected and not bad:
            bad.append(f"x={x.tolist()} w={w.tolist()}: expected {expected}, got {got}")
    assert not bad, bad[0]
