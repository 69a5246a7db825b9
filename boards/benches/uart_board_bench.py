"""cocotb bench: the board top (UART in, network, UART out) with a UART model on both lines; each image's reply
frame must match the golden model. Configured by the JSON file named in ``LUTMAC_BENCH_CONFIG``.

A two-clock board top (``net_clk``/``net_rst`` ports, see :class:`boards.board_top.BoardTop`) gets a second clock
of ``net_period_ps``. Every frame is recorded in the summary (also when one is wrong or missing), then the test
fails on the first mismatch or on a reply that does not come within ``reply_timeout_ns``."""

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, SimTimeoutError, with_timeout

from boards.host import decode_frame, frame_layout

CLK_PERIOD_NS = 10  # the sync (UART) clock


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


async def _reset(dut, net_period_ps):
    dut.rx.value = 1
    dut.rst.value = 1
    if net_period_ps:
        Clock(dut.net_clk, net_period_ps, unit="ps", impl="gpi").start()
        dut.net_rst.value = 1
        await ClockCycles(dut.net_clk, 4)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    if net_period_ps:
        dut.net_rst.value = 0


@cocotb.test()
async def board_top_over_uart(dut):
    cfg = json.loads(Path(os.environ["LUTMAC_BENCH_CONFIG"]).read_text())
    top, divisor = cfg["top"], cfg["divisor"]
    _, frame_bytes = frame_layout(top)
    Clock(dut.clk, CLK_PERIOD_NS, unit="ns", impl="gpi").start()
    await _reset(dut, cfg.get("net_period_ps"))
    await ClockCycles(dut.clk, 2 * divisor)
    results, failure = [], None
    for image, cls, scores in zip(cfg["images"], cfg["classes"], cfg["scores"]):
        receiver = cocotb.start_soon(_frame(dut, divisor, frame_bytes))
        for px in image:
            await uart_send(dut, px, divisor)
        try:
            frame = await with_timeout(receiver, cfg["reply_timeout_ns"], "ns")
        except SimTimeoutError:
            receiver.cancel()
            results.append({"timeout": True})
            failure = f"image {len(results) - 1}: no reply frame within {cfg['reply_timeout_ns']} ns"
            break
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
                "match": got_cls == cls and got_scores == scores,
            }
        )
        if not results[-1]["match"]:
            failure = failure or f"image {len(results) - 1}: {results[-1]}"
        await RisingEdge(dut.clk)
        if int(dut.led.value) != (got_cls & ((1 << len(dut.led)) - 1)):
            failure = failure or f"image {len(results) - 1}: the LEDs do not show the last class"
    mismatches = sum(not r.get("match", False) for r in results)
    Path(cfg["summary"]).write_text(json.dumps({"images": len(results), "mismatches": mismatches, "results": results}))
    assert failure is None, failure


async def _frame(dut, divisor, frame_bytes):
    return [await uart_receive(dut, divisor) for _ in range(frame_bytes)]
