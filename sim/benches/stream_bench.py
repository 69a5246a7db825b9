"""cocotb bench: feed a unit's input stream from an ``.npz`` of beats and record what leaves its output stream.

It judges nothing itself (the caller compares, knowing which lanes are real and how to read them), but a unit that
loses or withholds beats fails the bench: every expected beat must arrive within a cycle budget. Configured by the
JSON file named in ``LUTMAC_BENCH_CONFIG``: ``vectors`` (.npz with ``beats``), ``bits`` (input lane width),
``out_beats``, ``out_width`` (payload bits), ``record`` (.npy written with the raw output words as hex strings).
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


@cocotb.test()
async def stream_unit_outputs(dut):
    cfg = json.loads(Path(os.environ["LUTMAC_BENCH_CONFIG"]).read_text())
    beats = np.load(cfg["vectors"])["beats"]
    bits = cfg["bits"]
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    async def drive():
        for beat in beats:
            dut.i__payload.value = sum(int(v) << (bits * k) for k, v in enumerate(beat))
            dut.i__valid.value = 1
            while True:
                await ReadOnly()
                taken = int(dut.i__ready.value)
                await RisingEdge(dut.clk)
                if taken:
                    break
        dut.i__valid.value = 0

    cocotb.start_soon(drive())
    words = []
    budget = cfg.get("max_cycles", 50 * (len(beats) + cfg["out_beats"]) + 10_000)
    for _ in range(budget):
        if len(words) == cfg["out_beats"]:
            break
        await ReadOnly()
        if int(dut.o__valid.value):
            words.append(format(int(dut.o__payload.value), "x"))
        await RisingEdge(dut.clk)
    Path(cfg["record"]).write_text("\n".join(words) + "\n")
    assert len(words) == cfg["out_beats"], f"{len(words)} of {cfg['out_beats']} output beats after {budget} cycles"
