"""cocotb bench: one matrix-vector unit against the golden layer, with random valid gaps on the input and random
ready on the output. Vectors and expected outputs come from the ``.npz`` named in the JSON configuration."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


@cocotb.test()
async def layer_matches_golden(dut):
    cfg = json.loads(Path(os.environ["LUTMAC_BENCH_CONFIG"]).read_text())
    data = np.load(cfg["vectors"])
    beats, expected, real = data["beats"], data["expected"], data["real"]
    in_bits, pe, out_bits = cfg["in_bits"], cfg["pe"], cfg["out_bits"]
    signed_out = cfg["signed_out"]
    rng = np.random.default_rng(cfg.get("seed", 0))
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    outputs = []

    async def drive():
        # values written now hold for the current cycle; ReadOnly shows what the coming edge will sample
        for beat in beats:
            while rng.random() < cfg["gap"]:
                dut.i__valid.value = 0
                await RisingEdge(dut.clk)
            dut.i__payload.value = sum(int(v) << (in_bits * k) for k, v in enumerate(beat))
            dut.i__valid.value = 1
            while True:
                await ReadOnly()
                taken = int(dut.i__ready.value)
                await RisingEdge(dut.clk)
                if taken:
                    break
        dut.i__valid.value = 0

    cocotb.start_soon(drive())
    mask = (1 << out_bits) - 1
    while len(outputs) < len(expected):
        ready = int(rng.random() >= cfg["stall"])
        dut.o__ready.value = ready
        await ReadOnly()
        if ready and int(dut.o__valid.value):
            word = int(dut.o__payload.value)
            row = [(word >> (out_bits * p)) & mask for p in range(pe)]
            if signed_out:
                row = [v - (1 << out_bits) if v >> (out_bits - 1) else v for v in row]
            outputs.append(row)
        await RisingEdge(dut.clk)
    got = np.array(outputs)
    if cfg.get("corrupt"):
        expected = expected.copy()
        expected[0, 0] += 1  # lane 0 of the first beat is always a real neuron
    bad = np.argwhere((got != expected) & real)
    assert len(bad) == 0, (
        f"{len(bad)} mismatching outputs; first at beat {bad[0][0]} lane {bad[0][1]}: expected "
        f"{expected[tuple(bad[0])]}, got {got[tuple(bad[0])]}"
    )
