"""cocotb bench: real test images through ``lutmac_top`` (inside the HDL harness), every class and score compared
with the export's golden model. Configured by the JSON file named in ``LUTMAC_BENCH_CONFIG``."""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from export.golden import GoldenModel
from export.manifest import load_test_set
from sim.harness import parse_results


async def _stream(dut, first_image, count, per, already, timeout_ns, progress):
    """Stream ``count`` images from ``first_image``; wait for their results in chunks (for the progress bar)."""
    dut.first_beat.value = first_image * per
    dut.beat_count.value = count * per
    dut.expect_results.value = already
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    step = max(1, count // 40)
    for target in list(range(already + step, already + count, step)) + [already + count]:
        dut.expect_results.value = target
        await RisingEdge(dut.clk)
        if not int(dut.done.value):
            await with_timeout(RisingEdge(dut.done), timeout_ns * step, "ns")
        if progress:
            progress(target)


def _compare(trace, images_idx, classes, scores, layers):
    exp_cls, exp_scores = trace.classes[images_idx], trace.scores[images_idx]
    bad = np.nonzero((classes != exp_cls) | np.any(scores != exp_scores, axis=1))[0]
    first, first_image = None, None
    if len(bad):
        k = int(bad[0])
        img = first_image = int(images_idx[k])
        lanes = np.nonzero(scores[k] != exp_scores[k])[0].tolist()
        first = (
            f"image {img}: layer {layers[-1].name} (output) scores differ at classes {lanes}; expected "
            f"class {int(exp_cls[k])} scores {exp_scores[k].tolist()}, got class {int(classes[k])} scores "
            f"{scores[k].tolist()}"
        )
    return len(bad), first, first_image


@cocotb.test()
async def network_matches_golden(dut):
    cfg = json.loads(Path(os.environ["LUTMAC_BENCH_CONFIG"]).read_text())
    top = json.loads(Path(cfg["top_json"]).read_text())
    golden = GoldenModel(cfg["export"])
    images, labels = load_test_set(cfg["export"], golden.manifest)
    n, per = cfg["n"], top["beats_per_image"]
    trace = golden.run(images[:n])
    if cfg.get("corrupt"):
        trace.scores[n // 2, 0] += 1  # a wrong expectation: the bench must notice
        trace.classes[:] = np.argmax(trace.scores, 1)
    progress_file = cfg.get("progress_file")

    def progress(done):
        # read by the runner's progress bar: this process's own output goes to the run's log file
        if progress_file:
            Path(progress_file).write_text(f"{done}\n")

    Clock(dut.clk, 10, unit="ns", impl="gpi").start()  # toggled in C, not in Python
    dut.rst.value = 1
    dut.start.value = 0
    dut.first_beat.value = 0
    dut.beat_count.value = 0
    dut.expect_results.value = 0
    dut.gap_rate.value = cfg.get("gap_rate", 0)
    dut.stall_rate.value = cfg.get("stall_rate", 0)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    # generous: every image may wait out a full fold plus the pipeline, slowed 4x by gaps and stalls
    timeout_ns = 10 * 4 * (top["fold_bound_cycles"] + top["latency_cycles"] + per)
    t0 = time.perf_counter()
    order = np.arange(n)
    if cfg.get("reset_test") and n >= 4:
        # stream everything, reset once about half the results are out (mid-image), then restart at the first
        # image without a result: the network must recover and match again
        half = n // 2
        dut.first_beat.value, dut.beat_count.value, dut.expect_results.value = 0, n * per, half
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await with_timeout(RisingEdge(dut.done), timeout_ns * n, "ns")
        await ClockCycles(dut.clk, max(1, top["fold_bound_cycles"] // 3))
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        before = int(dut.results.value)
        progress(before)
        await _stream(dut, before, n - before, per, before, timeout_ns, progress)
        order = np.concatenate([np.arange(before), np.arange(before, n)])
    else:
        await _stream(dut, 0, n, per, 0, timeout_ns, progress)
    wall = time.perf_counter() - t0
    await ClockCycles(dut.clk, 2)
    cycles, classes, scores = parse_results(Path("results.txt").read_text(), top)
    assert len(classes) == n, f"expected {n} results, the harness logged {len(classes)}"
    mismatches, first, first_image = _compare(trace, order, classes, scores, golden.layers)
    steady = None
    if len(cycles) >= 4 and not cfg.get("gap_rate") and not cfg.get("stall_rate") and not cfg.get("reset_test"):
        diffs = np.diff(cycles[len(cycles) // 4 :])
        steady = float(np.median(diffs)) if len(diffs) else None
    summary = {
        "simulator": cfg["simulator"],
        "images": n,
        "mismatches": mismatches,
        "accuracy": float((classes == labels[order]).mean()),
        "golden_accuracy": float((trace.classes[order] == labels[order]).mean()),
        "cycles_per_image": steady,
        "fold_bound_cycles": top["fold_bound_cycles"],
        "cycles_per_image_vs_fold_bound": (steady / top["fold_bound_cycles"]) if steady else None,
        "first_result_cycle": int(cycles[0]) if len(cycles) else None,
        "sim_seconds": round(wall, 3),
        "images_per_s": round(n / wall, 1) if wall > 0 else None,
        "first_mismatch": first,
        "first_mismatch_image": first_image,
        "reset_test": bool(cfg.get("reset_test")),
        "gap_rate": cfg.get("gap_rate", 0),
        "stall_rate": cfg.get("stall_rate", 0),
    }
    with open(cfg["summary"], "w") as f:
        json.dump(summary, f, indent=2)
    assert mismatches == 0, f"{mismatches} of {n} images mismatch; first: {first}"
