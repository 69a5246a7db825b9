"""cocotb bench: a feature-map unit (sliding window or max-pool) against export.conv's golden model, with random
valid gaps on the input and random ready on the output. Input beats and expected output beats come from the
``.npz`` named in the JSON configuration (``LUTMAC_BENCH_CONFIG``); both are compared value by value."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


def _pack(values, bits):
    return sum(int(v) << (bits * k) for k, v in enumerate(values))


def _unpack(word, bits, lanes):
    mask = (1 << bits) - 1
    return [(word >> (bits * k)) & mask for k in range(lanes)]


@cocotb.test()
async def map_unit_matches_golden(dut):
    cfg = json.loads(Path(os.environ["LUTMAC_BENCH_CONFIG"]).read_text())
    data = np.load(cfg["vectors"])
    beats, expected = data["beats"], data["expected"]
    bits, out_lanes = cfg["bits"], expected.shape[1]
    rng = np.random.default_rng(cfg.get("seed", 0))
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    async def drive():
        # values written now hold for the current cycle; ReadOnly shows what the coming edge will sample
        for beat in beats:
            while rng.random() < cfg["gap"]:
                dut.i__valid.value = 0
                await RisingEdge(dut.clk)
            dut.i__payload.value = _pack(beat, bits)
            dut.i__valid.value = 1
            while True:
                await ReadOnly()
                taken = int(dut.i__ready.value)
                await RisingEdge(dut.clk)
                if taken:
                    break
        dut.i__valid.value = 0

    cocotb.start_soon(drive())
    outputs = []
    # a lost beat or a deadlock must fail the bench, not hang it
    budget = cfg.get("max_cycles", 20 * (len(beats) + len(expected)) + 1000)
    for _ in range(budget):
        if len(outputs) == len(expected):
            break
        ready = int(rng.random() >= cfg["stall"])
        dut.o__ready.value = ready
        await ReadOnly()
        if ready and int(dut.o__valid.value):
            outputs.append(_unpack(int(dut.o__payload.value), bits, out_lanes))
        await RisingEdge(dut.clk)
    assert len(outputs) == len(expected), f"{len(outputs)} of {len(expected)} beats after {budget} cycles"
    got = np.array(outputs, np.int64)
    if cfg.get("corrupt"):
        expected = expected.copy()
        expected[0, 0] ^= 1  # lane 0 of the first beat is always a real channel
    bad = np.argwhere(got != expected)
    assert len(bad) == 0, (
        f"{len(bad)} mismatching values; first at beat {bad[0][0]} lane {bad[0][1]}: expected "
        f"{expected[tuple(bad[0])]}, got {got[tuple(bad[0])]}"
    )
