"""cocotb bench: the board top (UART in, network, UART out) with a UART model on both lines; each image's reply
frame must match the golden model. Configured by the JSON file named in ``LUTMAC_BENCH_CONFIG``."""

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from boards.host import decode_frame, frame_layout


async def uart_send(dut, byte, divisor):
    for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
        dut.rx.value = bit
        await ClockCycles(dut.clk, divisor)


async def uart_receive(dut, divisor):
    while int(dut.tx.value) != 0:
        await FallingEdge(dut.tx)
    await ClockCycles(dut.clk, divisor + divisor // 2)  # to the middle of data bit 0
    byte = 0
    for k in range(8):
        byte |= int(dut.tx.value) << k
        await ClockCycles(dut.clk, divisor)
    assert int(dut.tx.value) == 1, "stop bit is low"
    return byte


@cocotb.test()
async def board_top_over_uart(dut):
    cfg = json.loads(Path(os.environ["LUTMAC_BENCH_CONFIG"]).read_text())
    top, divisor = cfg["top"], cfg["divisor"]
    _, frame_bytes = frame_layout(top)
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2 * divisor)
    results = []
    for image, cls, scores in zip(cfg["images"], cfg["classes"], cfg["scores"]):
        receiver = cocotb.start_soon(_frame(dut, divisor, frame_bytes))
        for px in image:
            await uart_send(dut, px, divisor)
        frame = await receiver
        got_cls, got_scores, cycles = decode_frame(bytes(frame), top)
        if cfg.get("corrupt"):
            cls += 1
        results.append(
            {
                "class": got_cls,
                "expected_class": cls,
                "scores": got_scores,
                "expected_scores": scores,
                "cycles": cycles,
                "led": int(dut.led.value),
            }
        )
        assert got_cls == cls and got_scores == scores, results[-1]
        await RisingEdge(dut.clk)
        assert int(dut.led.value) == (cls & ((1 << len(dut.led)) - 1)), "LEDs do not show the last class"
    Path(cfg["summary"]).write_text(json.dumps({"images": len(results), "results": results}))


async def _frame(dut, divisor, frame_bytes):
    return [await uart_receive(dut, divisor) for _ in range(frame_bytes)]
