"""Build a design once per content hash, run a cocotb bench on it, return its summary. The tools' own output
(Verilator's C++ build, the cocotb banner) goes to log files beside the build and the run, never to the terminal."""

import hashlib
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

from common.files import claim_directory

from . import SimError
from .harness import HARNESS_TOP, beats_hex, harness_verilog
from .toolchain import check_simulator, icarus_source

__all__ = ["build_design", "run_bench", "simulate_network", "VERILATOR_ARGS", "BUILD_LOG", "RUN_LOG"]

# Amaranth's Verilog trips WIDTH lint warnings; they are not errors.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial", "fast"]

#: the simulator's build output, in the build folder; the bench run's output (cocotb and the simulator), in the run
#: folder
BUILD_LOG, RUN_LOG = "build.log", "sim.log"

_ERROR_LINE = re.compile(r"%Error|\berror\b|\bERROR\b|Traceback|AssertionError", re.I)


def first_error(log_path):
    """The first line of the log at ``log_path`` that reads like an error (shortened), or None."""
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                if _ERROR_LINE.search(line):
                    line = line.strip()
                    return line if len(line) <= 200 else line[:197] + "..."
    except OSError:
        pass
    return None


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


def build_design(sim, sources, toplevel, cache_root, *, waves=False, keep=False, announce=None):
    """Build ``sources`` for ``sim`` into ``cache_root/<sim>-<hash>`` unless that build already exists; the build's
    output goes to ``BUILD_LOG`` in that folder, and a failed build raises :class:`SimError` naming it. A Verilator
    build keeps only its simulation executable (the generated C++, objects and precompiled headers are a hundred MB
    or more for a network and nothing reads them again) unless ``keep``. ``announce(log_path)`` is called before
    an actual build (not for a cached one)."""
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
    log = build_dir / BUILD_LOG
    # a pruned Verilator build runs as well as a full one, but a user asking to keep the build wants its files
    cached = marker.exists() and not (keep and sim == "verilator" and not (build_dir / "Vtop.mk").exists())
    if cached:
        # build() also records what test() needs; with the design already built, let it run no command
        runner._build_command = lambda: []
    else:
        shutil.rmtree(build_dir, ignore_errors=True)
        if announce is not None:
            announce(log)
    args = (list(VERILATOR_ARGS) + (["--trace-fst", "--trace-structs"] if waves else [])) if sim == "verilator" else []
    try:
        runner.build(
            sources=[str(s) for s in sources],
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=args,
            timescale=("1ns", "1ps"),
            waves=waves,
            always=not cached,
            log_file=None if cached else log,  # a cached build runs nothing: keep the log of the real one
        )
    except (RuntimeError, SystemExit) as e:
        why = first_error(log) or str(e)
        raise SimError(f"{sim} could not build {toplevel}: {why} (full log: {log})") from None
    if not cached:
        marker.write_text("ok\n")
        if sim == "verilator" and not keep:
            _prune_verilator_build(build_dir, toplevel)
    return runner, build_dir


def _prune_verilator_build(build_dir, toplevel):
    """Delete everything in a finished Verilator build but the executable (what ``test()`` runs), the marker and the
    log."""
    for f in build_dir.iterdir():
        if f.name in (toplevel, "lutmac-built", BUILD_LOG):
            continue
        if f.is_dir() and not f.is_symlink():
            shutil.rmtree(f, ignore_errors=True)
        else:
            f.unlink(missing_ok=True)


def run_bench(runner, build_dir, toplevel, module, test_dir, config, *, waves=False):
    """Run cocotb ``module`` with ``config`` (JSON, passed by file); returns ``(passed, summary or None)``. Everything
    the simulator prints goes to ``test_dir/RUN_LOG``."""
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
            log_file=test_dir / RUN_LOG,
        )
    except (SystemExit, RuntimeError):
        # the runner exits on failing tests when called under pytest and raises when the simulator exits non-zero;
        # the results file and the log say why
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
    keep_build=False,
):
    """Stream ``n`` test images (all when None) through ``rtl_dir/top.v``; returns the bench summary dict
    (``passed`` added). On a mismatch, ``locate`` simulates each layer alone on the first mismatching image
    (:func:`sim.locate.locate_mismatch`) and adds its verdict as ``first_difference``. ``progress``: a line while
    the simulator builds and a progress bar while images stream (on stderr). ``keep_build``: keep Verilator's
    generated C++ and objects (by default only the simulation executable stays). The summary's ``log`` names the
    run's log file."""
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
    status = _Status(sim) if progress else None
    try:
        runner, build_dir = build_design(
            sim, sources, HARNESS_TOP, work_dir / "build", waves=waves, keep=keep_build, announce=status
        )
    finally:
        if status is not None:
            status.clear()
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
        "progress_file": str((run_dir / "progress.txt").resolve()) if progress else None,
    }
    t1 = time.perf_counter()
    bench = "sim.benches.axis_bench" if top.get("interface") == "axis" else "sim.benches.network_bench"
    with _ProgressBar(run_dir / "progress.txt", n, f"sim {sim}", enabled=progress):
        passed, summary = run_bench(runner, build_dir, HARNESS_TOP, bench, run_dir, config, waves=waves)
    log = run_dir / RUN_LOG
    if summary is None:
        why = first_error(log)
        raise SimError(
            f"{sim}: the bench ended without a summary{': ' + why if why else ''}; it did not run to the end "
            f"(full log: {log})"
        )
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
        log=str(log),
    )
    return summary


class _Status:
    """One line on stderr while the simulator builds, erased afterwards on a terminal (where the progress bar takes
    its place)."""

    def __init__(self, sim):
        self.sim, self.shown = sim, None

    def __call__(self, log):
        self.shown = f"sim {self.sim}: building the simulation model (log: {log})"
        tty = sys.stderr.isatty()
        print(self.shown, end="\r" if tty else "\n", file=sys.stderr, flush=True)
        self.shown = self.shown if tty else None

    def clear(self):
        if self.shown:
            print("\r" + " " * len(self.shown) + "\r", end="", file=sys.stderr, flush=True)
            self.shown = None


class _ProgressBar:
    """A tqdm bar in this process, fed by the count of finished images the bench writes to ``path`` (the simulator
    runs in a child process whose output goes to a log file)."""

    def __init__(self, path, total, desc, *, enabled=True):
        self.path, self.total, self.desc, self.enabled = Path(path), total, desc, enabled
        self._stop = threading.Event()

    def _read(self):
        try:
            return int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):  # not written yet, or caught mid-write
            return None

    def _poll(self, bar):
        while not self._stop.wait(0.2):
            done = self._read()
            if done is not None and done > bar.n:
                bar.update(min(done, self.total) - bar.n)

    def __enter__(self):
        if not self.enabled:
            return self
        from tqdm import tqdm

        self.path.unlink(missing_ok=True)
        self._bar = tqdm(total=self.total, desc=self.desc, unit="img", file=sys.stderr, dynamic_ncols=True)
        self._thread = threading.Thread(target=self._poll, args=(self._bar,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()
            done = self._read()
            if done is not None and done > self._bar.n:
                self._bar.update(min(done, self.total) - self._bar.n)
            self._bar.close()
        return False
