"""The board top in simulation: its Verilog beside the network's, a UART model in a cocotb bench (via sim/).

Simulation does not model the PLL: with a net clock, the board top's Verilog takes it as the ports ``net_clk`` and
``net_rst`` (:class:`~boards.board_top.BoardTop` uses the ``net`` domain without creating it; only the board wrapper,
:func:`boards.platforms.design_for`, drives it from an ``EHXPLLL``), and the bench drives them.
"""

import json
from pathlib import Path

from . import BoardsError
from .host import frame_layout

__all__ = ["board_verilog", "simulate_board"]

BOARD_TOP = "lutmac_board"
CLK_PERIOD_PS = 10_000  # the bench's sync clock (boards/benches/uart_board_bench.py)


def board_verilog(top, *, clk_freq, baud, leds=8, net_clk_freq=None):
    """Verilog of :class:`~boards.board_top.BoardTop` (module ``lutmac_board``) for the network in ``top``; with
    ``net_clk_freq`` the network runs in the ``net`` domain, whose clock and reset are the ports ``net_clk`` and
    ``net_rst``."""
    from amaranth.back import verilog

    from .board_top import BoardTop

    try:
        board = BoardTop(top=top, clk_freq=clk_freq, baud=baud, leds=leds, net_clk_freq=net_clk_freq)
    except ValueError as e:
        raise BoardsError(str(e)) from None
    return verilog.convert(board, name=BOARD_TOP, emit_src=False)


def net_period_ps(net_ratio):
    """The bench's net clock period in ps for ``net_ratio`` = net frequency / sync frequency (even, so that both
    clock phases are whole picoseconds)."""
    if isinstance(net_ratio, bool) or not isinstance(net_ratio, (int, float)) or not 0.05 <= net_ratio <= 20:
        raise BoardsError(f"net_ratio must be a number from 0.05 to 20 (net clock / UART clock), not {net_ratio!r}")
    return 2 * round(CLK_PERIOD_PS / 2 / net_ratio)


def simulate_board(export_dir, rtl_dir, *, sim="icarus", n=4, divisor=8, work_dir, corrupt=False, net_ratio=None):
    """Send ``n`` test images through the board top's UART; returns ``(passed, summary)``.

    Parameters
    ----------
    divisor : int
        UART clock cycles per bit.
    corrupt : bool
        Expect a wrong class (the bench must then fail).
    net_ratio : float or None
        ``None``: the network runs on the UART's clock. A ratio: the two-clock board top, its ``net`` clock that
        many times as fast as the UART's (below 1: slower); the bench's period is rounded to 2 ps.

    The summary has ``images`` (frames received), ``mismatches`` and per image ``class``, ``scores``, ``cycles``
    (network cycles, last beat in to result out), ``led`` and ``match`` (or ``timeout`` for a missing frame).
    """
    from export.golden import GoldenModel
    from export.manifest import load_test_set, read_manifest
    from sim.runner import build_design, run_bench

    period = None if net_ratio is None else net_period_ps(net_ratio)
    rtl_dir, work_dir = Path(rtl_dir).resolve(), Path(work_dir).resolve()
    top = json.loads((rtl_dir / "top.json").read_text())
    images, _ = load_test_set(export_dir, read_manifest(export_dir))
    images = images[:n].reshape(n, -1)
    trace = GoldenModel(export_dir).run(images)
    work_dir.mkdir(parents=True, exist_ok=True)
    # the UART runs at 1 Mbaud on a nominal divisor-MHz clock; the net clock keeps the bench's ratio to it
    clk_freq = 1e6 * divisor
    net_clk_freq = None if period is None else clk_freq * CLK_PERIOD_PS / period
    text = board_verilog(top, clk_freq=clk_freq, baud=1_000_000, net_clk_freq=net_clk_freq)
    board = work_dir / ("board_top.v" if period is None else "board_top_net.v")
    if not board.exists() or board.read_text() != text:
        board.write_text(text)
    sources = [rtl_dir / "top.v", board]
    if top.get("simulation_models"):
        sources.insert(1, rtl_dir / top["simulation_models"])
    runner, build_dir = build_design(sim, sources, BOARD_TOP, work_dir / "build")
    run_dir = work_dir / (f"run-{sim}-{int(corrupt)}" + ("" if period is None else f"-net{period}ps"))
    # a reply is due within the frame's transmission plus the network's latency (in the slower clock), twice over
    slowest_ps = max(CLK_PERIOD_PS, period or 0)
    frame_ps = frame_layout(top)[1] * 10 * divisor * CLK_PERIOD_PS
    cfg = {
        "top": top,
        "divisor": divisor,
        "net_period_ps": period,
        "reply_timeout_ns": 2 * (frame_ps + (top["latency_cycles"] + 64) * slowest_ps) // 1000,
        "images": images.astype(int).tolist(),
        "classes": trace.classes.astype(int).tolist(),
        "scores": trace.scores.astype(int).tolist(),
        "corrupt": corrupt,
        "summary": str(run_dir / "bench-summary.json"),
    }
    return run_bench(runner, build_dir, BOARD_TOP, "boards.benches.uart_board_bench", run_dir, cfg)
