"""The board top in simulation: its Verilog beside the network's, a UART model in a cocotb bench (via sim/)."""

import json
from pathlib import Path

from . import BoardsError

__all__ = ["board_verilog", "simulate_board"]

BOARD_TOP = "lutmac_board"


def board_verilog(top, *, clk_freq, baud, leds=8):
    """Verilog of :class:`~boards.board_top.BoardTop` (module ``lutmac_board``) for the network in ``top``."""
    from amaranth.back import verilog

    from .board_top import BoardTop

    try:
        board = BoardTop(top=top, clk_freq=clk_freq, baud=baud, leds=leds)
    except ValueError as e:
        raise BoardsError(str(e)) from None
    return verilog.convert(board, name=BOARD_TOP, emit_src=False)


def simulate_board(export_dir, rtl_dir, *, sim="icarus", n=4, divisor=8, work_dir, corrupt=False):
    """Send ``n`` test images through the board top's UART; returns ``(passed, summary)``."""
    from export.golden import GoldenModel
    from export.manifest import load_test_set, read_manifest
    from sim.runner import build_design, run_bench

    rtl_dir, work_dir = Path(rtl_dir).resolve(), Path(work_dir).resolve()
    top = json.loads((rtl_dir / "top.json").read_text())
    images, _ = load_test_set(export_dir, read_manifest(export_dir))
    images = images[:n].reshape(n, -1)
    trace = GoldenModel(export_dir).run(images)
    work_dir.mkdir(parents=True, exist_ok=True)
    board = work_dir / "board_top.v"
    text = board_verilog(top, clk_freq=1e6 * divisor, baud=1_000_000)
    if not board.exists() or board.read_text() != text:
        board.write_text(text)
    sources = [rtl_dir / "top.v", board]
    if top.get("simulation_models"):
        sources.insert(1, rtl_dir / top["simulation_models"])
    runner, build_dir = build_design(sim, sources, BOARD_TOP, work_dir / "build")
    run_dir = work_dir / f"run-{sim}-{int(corrupt)}"
    cfg = {
        "top": top,
        "divisor": divisor,
        "images": images.astype(int).tolist(),
        "classes": trace.classes.astype(int).tolist(),
        "scores": trace.scores.astype(int).tolist(),
        "corrupt": corrupt,
        "summary": str(run_dir / "bench-summary.json"),
    }
    return run_bench(runner, build_dir, BOARD_TOP, "boards.benches.uart_board_bench", run_dir, cfg)
