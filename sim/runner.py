"""Build a design once per content hash, run a cocotb bench on it, return its summary."""

import hashlib
import json
import shutil
import time
from pathlib import Path

from common.files import claim_directory

from . import SimError
from .harness import HARNESS_TOP, beats_hex, harness_verilog
from .toolchain import check_simulator, icarus_source

__all__ = ["build_design", "run_bench", "simulate_network", "VERILATOR_ARGS"]

# Amaranth's Verilog trips WIDTH lint warnings; they are not errors.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial", "fast"]


def _runner(sim):
    from cocotb_tools.runner import Verilator, get_runner

    if sim != "verilator":
        return get_runner(sim)

    class _HarnessVerilator(Verilator):
        # cocotb marks every signal public (--public-flat-rw), which stops Verilator optimising the network and
        # costs ~10x in simulation speed; the benches touch only the top module's ports, so depth 1 is enough.
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            cmds[0][1:1] = ["--public-depth", "1"]
            return cmds

    return _HarnessVerilator()


def build_design(sim, sources, toplevel, cache_root, *, waves=False):
    """Build ``sources`` for ``sim`` into ``cache_root/<sim>-<hash>`` unless that build already exists."""
    check_simulator(sim)
    if sim == "icarus":
        Path(cache_root).mkdir(parents=True, exist_ok=True)
        sources = [icarus_source(s, cache_root) for s in sources]
    h = hashlib.sha256()
    for s in sources:
        h.update(Path(s).read_bytes())
    h.update(f"{sim}|{toplevel}|{waves}|{VERILATOR_ARGS}|public-depth-1".encode())
    build_dir = Path(cache_root) / f"{sim}-{toplevel}-{h.hexdigest()[:16]}"
    runner = _runner(sim)
    marker = build_dir / "lutmac-built"
    cached = marker.exists()
    if cached:
        # build() also records what test() needs; with the design already built, let it run no command
        runner._build_command = lambda: []
    else:
        shutil.rmtree(build_dir, ignore_errors=True)
    args = (list(VERILATOR_ARGS) + (["--trace-fst", "--trace-structs"] if waves else [])) if sim == "verilator" else []
    runner.build(
        sources=[str(s) for s in sources],
        hdl_toplevel=toplevel,
        build_dir=build_dir,
        build_args=args,
        timescale=("1ns", "1ps"),
        waves=waves,
        always=not cached,
    )
    if not cached:
        marker.write_text("ok\n")
    return runner, build_dir


def run_bench(runner, build_dir, toplevel, module, test_dir, config, *, waves=False):
    """Run cocotb ``module`` with ``config`` (JSON, passed by file); returns ``(passed, summary or None)``."""
    from cocotb_tools.runner import get_results

    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = test_dir / "bench-config.json"
    cfg_path.write_text(json.dumps(config))
    xml = (test_dir / "results.xml").resolve()
    if xml.exists():
        xml.unlink()
    try:
        runner.test(
            test_module=module,
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            test_dir=test_dir,
            extra_env={"LUTMAC_BENCH_CONFIG": str(cfg_path)},
            waves=waves,
            timescale=("1ns", "1ps"),
            results_xml=str(xml),
        )
    except SystemExit:  # the runner exits on failing tests when called under pytest; the results file says why
        pass
    try:
        total, failed = get_results(xml)
    except RuntimeError:
        total, failed = 0, 0
    summary_path = Path(config.get("summary", test_dir / "bench-summary.json"))
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return total > 0 and failed == 0, summary


def simulate_network(
    export_dir,
    rtl_dir,
    *,
    sim="verilator",
    n=None,
    work_dir,
    waves=False,
    gap_rate=0,
    stall_rate=0,
    reset_test=False,
    corrupt=False,
    progress=True,
    locate=True,
):
    """Stream ``n`` test images (all when None) through ``rtl_dir/top.v``; returns the bench summary dict
    (``passed`` added). On a mismatch, ``locate`` simulates each layer alone on the first mismatching image
    (:func:`sim.locate.locate_mismatch`) and adds its verdict as ``first_difference``."""
    from export import ExportError
    from export.manifest import load_test_set, read_manifest

    rtl_dir, work_dir = Path(rtl_dir).resolve(), Path(work_dir).resolve()
    try:
        top = json.loads((rtl_dir / "top.json").read_text())
        (rtl_dir / "top.v").stat()
    except (OSError, json.JSONDecodeError) as e:
        raise SimError(f"{rtl_dir}: no usable top.v/top.json ({e}); run `make gen` first") from None
    try:
        manifest = read_manifest(export_dir)
        images, _ = load_test_set(export_dir, manifest)
    except ExportError as e:
        raise SimError(f"export: {e}") from None
    made_from = top.get("export_sha256")
    if made_from and made_from != hashlib.sha256((Path(export_dir) / "manifest.json").read_bytes()).hexdigest():
        raise SimError(
            f"{rtl_dir}/top.v was generated from another export ({top.get('export')}) than "
            f"{export_dir}: run `make gen` again, or pass the export it was made from"
        )
    if top.get("pixels") != int(images[0].size):
        raise SimError(
            f"{rtl_dir}/top.json takes {top.get('pixels')} pixels, the export's images have "
            f"{images[0].size}: the RTL was generated from another export"
        )
    total = len(images)
    n = total if n is None else n
    if not 1 <= n <= total:
        raise SimError(f"n={n} is outside 1..{total} (test images in the export)")
    claim_directory(work_dir, stage="sim", inputs=(export_dir, rtl_dir))
    harness = work_dir / "harness.v"
    text = harness_verilog(top, total * top["beats_per_image"])
    if not harness.exists() or harness.read_text() != text:
        harness.write_text(text)
    t0 = time.perf_counter()
    sources = [rtl_dir / "top.v", harness]
    if top.get("simulation_models"):  # a Xilinx-primitive netlist: add the primitives' behavioural models
        models = rtl_dir / top["simulation_models"]
        if not models.is_file():
            raise SimError(f"{models}: missing (top.json names it); run `make gen` again")
        sources.insert(1, models)
    runner, build_dir = build_design(sim, sources, HARNESS_TOP, work_dir / "build", waves=waves)
    build_s = time.perf_counter() - t0
    run_dir = work_dir / f"run-{sim}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "beats.hex").write_text(beats_hex(images, top))
    summary_path = run_dir / "bench-summary.json"  # not summary.json: that names a pnr output
    if summary_path.exists():
        summary_path.unlink()
    config = {
        "export": str(Path(export_dir).resolve()),
        "top_json": str((rtl_dir / "top.json").resolve()),
        "n": n,
        "simulator": sim,
        "summary": str(summary_path.resolve()),
        "gap_rate": gap_rate,
        "stall_rate": stall_rate,
        "reset_test": reset_test,
        "corrupt": corrupt,
        "progress": progress,
    }
    t1 = time.perf_counter()
    bench = "sim.benches.axis_bench" if top.get("interface") == "axis" else "sim.benches.network_bench"
    passed, summary = run_bench(runner, build_dir, HARNESS_TOP, bench, run_dir, config, waves=waves)
    if summary is None:
        raise SimError(f"{sim}: the bench ended without a summary (see {run_dir}); it did not run to the end")
    dumps = (
        sorted(
            [*run_dir.glob("*.fst"), *run_dir.glob("*.vcd"), *build_dir.glob("*.fst"), *build_dir.glob("*.vcd")],
            key=lambda p: p.stat().st_mtime,
        )
        if waves
        else []
    )
    if summary["mismatches"] and locate and summary.get("first_mismatch_image") is not None and not corrupt:
        from .locate import locate_mismatch

        summary["first_difference"] = locate_mismatch(
            export_dir, top, summary["first_mismatch_image"], sim=sim, work_dir=work_dir / "locate"
        )
    summary.update(
        passed=passed,
        build_seconds=round(build_s, 2),
        wall_seconds=round(time.perf_counter() - t0, 2),
        run_seconds=round(time.perf_counter() - t1, 2),
        waves=str(dumps[-1]) if dumps else None,
    )
    return summary
