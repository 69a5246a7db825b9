"""cocotb benches on Verilator and Icarus through the runner: PE, layer, and the whole network on digits."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import have_simulator as _have

from sim import SimError
from sim.toolchain import check_simulator
from sim.units import simulate_layer, simulate_pe

SIMS = [
    pytest.param(s, marks=pytest.mark.skipif(not _have(s), reason=f"{s} is not installed (make setup installs it)"))
    for s in ("verilator", "icarus")
]
slow = pytest.mark.slow


@pytest.fixture(scope="session")
def sim_work(tmp_path_factory):
    return tmp_path_factory.mktemp("sim")


# Icarus takes every shape; a Verilator build costs 10-15 s, so `make test` builds one (odd lanes, pipelined)
@pytest.mark.parametrize(
    "sim, lanes, bits, pipeline",
    [
        pytest.param(sim.values[0], *shape, marks=[*sim.marks, *([] if shape == (33, 8, 2) else [slow])])
        if sim.values[0] == "verilator"
        else pytest.param(sim.values[0], *shape, marks=sim.marks)
        for shape in [(7, 4, 0), (64, 8, 0), (3, 2, 1), (33, 8, 2)]
        for sim in SIMS
    ],
)
def test_pe_bench(sim, sim_work, lanes, bits, pipeline):
    assert simulate_pe(lanes=lanes, bits=bits, pipeline=pipeline, sim=sim, work_dir=sim_work)


# the Xilinx primitive netlist (LUT6_2 + CARRY4/CARRY8 models) against the same golden arithmetic
# (Icarus builds in a second, so it takes every case; Verilator two, for the second simulator's semantics)
@pytest.mark.parametrize(
    "sim, target, lanes, bits, pipeline, signed",
    [
        pytest.param(*case, marks=SIMS[0 if case[0] == "verilator" else 1].marks)
        for case in [
            ("icarus", "xc7", 64, 8, 0, False),
            ("icarus", "xc7", 1, 3, 0, False),
            ("icarus", "xc7", 7, 4, 0, False),
            ("icarus", "xc7", 33, 8, 2, True),
            ("icarus", "xcup", 64, 8, 3, False),
            ("icarus", "xcup", 6, 5, 1, True),
            ("icarus", "xcup", 5, 1, 0, False),
            ("verilator", "xc7", 20, 8, 2, False),
        ]
    ]
    + [pytest.param("verilator", "xc7", 64, 8, 2, False, marks=[*SIMS[0].marks, pytest.mark.slow])],
)
def test_xilinx_pe_bench(sim, sim_work, target, lanes, bits, pipeline, signed):
    assert simulate_pe(
        lanes=lanes, bits=bits, pipeline=pipeline, signed=signed, target=target, sim=sim, work_dir=sim_work
    )


@pytest.mark.skipif(not _have("icarus"), reason="icarus is not installed (make setup installs it)")
def test_xilinx_pe_bench_catches_broken_ternary_levels(sim_work, monkeypatch):
    """The PE bench sees the ternary levels' carry and sign handling: it fails when an adder drops the ``+w``
    corrections it takes on its carry-in or on ``k_0``, or zero-extends a signed partial sum."""
    import hw.ternary as ternary

    orig = ternary.ternary_add
    breaks = {
        "carry-ins dropped": lambda m, name, fam, terms, n, carry_ins=(): orig(m, name, fam, terms, n),
        "k_0 carry-in dropped": lambda m, name, fam, terms, n, carry_ins=(): orig(
            m, name, fam, terms, n, carry_ins[:1]
        ),
        "signed sums zero-extended": lambda m, name, fam, terms, n, carry_ins=(): orig(
            m, name, fam, [(v, False, s) for v, _, s in terms], n, carry_ins
        ),
    }
    cases = [dict(lanes=33, bits=4, signed=False), dict(lanes=20, bits=3, signed=True, pipeline=1)]
    for case in cases:
        assert simulate_pe(**case, target="xc7", sim="icarus", work_dir=sim_work / "good")
    for k, (why, broken) in enumerate(breaks.items()):
        with monkeypatch.context() as mp:
            mp.setattr(ternary, "ternary_add", broken)
            failed = [not simulate_pe(**c, target="xc7", sim="icarus", work_dir=sim_work / f"b{k}") for c in cases]
        assert any(failed), why


# at least 8 foldings: odd lane counts, PE/SIMD not dividing the layer, ABITS 2/4/8, the output layer
FOLDINGS = [
    dict(n_in=13, n_out=7, pe=3, simd=5, in_lanes=4, in_bits=4, abits=4),
    dict(n_in=10, n_out=6, pe=4, simd=3, in_lanes=3, in_bits=8, abits=2),
    dict(n_in=64, n_out=16, pe=16, simd=64, in_lanes=64, in_bits=8, abits=8),
    dict(n_in=49, n_out=12, pe=5, simd=49, in_lanes=7, in_bits=8, abits=4),
    dict(n_in=9, n_out=5, pe=1, simd=1, in_lanes=2, in_bits=8, abits=2),
    dict(n_in=31, n_out=9, pe=9, simd=8, in_lanes=31, in_bits=2, abits=8),
    dict(n_in=20, n_out=10, pe=10, simd=7, in_lanes=5, in_bits=2, abits=None),
    dict(n_in=17, n_out=10, pe=3, simd=17, in_lanes=6, in_bits=4, abits=None),
]


# Icarus builds in a second and takes every folding; a Verilator build costs 15-60 s, so `make test` runs one of them
# on Verilator (odd sizes) and `make test-slow` the rest
VERILATOR_FOLDINGS = {"13x7-pe3-simd5"}


def _folding_id(f):
    return f"{f['n_in']}x{f['n_out']}-pe{f['pe']}-simd{f['simd']}"


@pytest.mark.parametrize(
    "sim, folding",
    [
        pytest.param(
            sim.values[0],
            f,
            id=f"{_folding_id(f)}-{sim.values[0]}",
            marks=[
                *sim.marks,
                *([] if sim.values[0] == "icarus" or _folding_id(f) in VERILATOR_FOLDINGS else [pytest.mark.slow]),
            ],
        )
        for f in FOLDINGS
        for sim in SIMS
    ],
)
def test_layer_bench(sim, sim_work, folding):
    assert simulate_layer(**folding, sim=sim, work_dir=sim_work, seed=folding["n_in"])


@pytest.mark.parametrize("sim", SIMS)
def test_benches_can_fail(sim, sim_work):
    """A deliberately wrong expectation makes each bench report failure."""
    assert not simulate_pe(lanes=7, bits=4, sim=sim, work_dir=sim_work, corrupt=True)
    assert not simulate_pe(lanes=7, bits=4, target="xc7", sim=sim, work_dir=sim_work, corrupt=True)
    assert not simulate_layer(**FOLDINGS[0], sim=sim, work_dir=sim_work, seed=13, corrupt=True)


@pytest.fixture(scope="session")
def digits_rtl(digits_export, tmp_path_factory):
    from hw.gen import generate

    out = tmp_path_factory.mktemp("digits-rtl") / "rtl"
    generate(digits_export[1], out, pe=4, simd=16)
    return digits_export[1], out


@pytest.mark.skipif(not _have("icarus"), reason="icarus is not installed (make setup installs it)")
def test_xilinx_netlist_network_on_digits(digits_export, tmp_path):
    """`hw gen --target xc7`: the primitive netlist (with its models from sim_models.v) is bit-exact too."""
    from hw.gen import generate

    rtl = tmp_path / "rtl"
    desc = generate(digits_export[1], rtl, pe=4, simd=16, tree_pipeline=2, target="xc7")
    assert desc["tree_target"] == "xc7" and (rtl / desc["simulation_models"]).is_file()
    assert "LUT6_2" in (rtl / "top.v").read_text() and "module LUT6_2" not in (rtl / "top.v").read_text()
    r = _sim_cli(
        "--export",
        str(digits_export[1]),
        "--rtl",
        str(rtl),
        "--sim",
        "icarus",
        "--n",
        "12",
        "--gap",
        "50",
        "--stall",
        "50",
        "-o",
        str(tmp_path / "sim"),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path / "sim" / "results.json").read_text())
    assert res["mismatches"] == 0 and res["images"] == 12


def _sim_cli(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args, "--quiet"], capture_output=True, text=True)


@pytest.mark.parametrize(
    "sim, n", [pytest.param("verilator", "all", marks=SIMS[0].marks), pytest.param("icarus", "24", marks=SIMS[1].marks)]
)
def test_network_bench_on_digits(sim, n, digits_rtl, tmp_path_factory):
    export_dir, rtl = digits_rtl
    out = tmp_path_factory.getbasetemp() / f"netsim-{sim}"
    r = _sim_cli("--export", str(export_dir), "--rtl", str(rtl), "--sim", sim, "--n", n, "-o", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    for key in (
        "simulator",
        "images",
        "mismatches",
        "accuracy",
        "cycles_per_image",
        "fold_bound_cycles",
        "wall_seconds",
    ):
        assert key in res
    assert res["mismatches"] == 0 and res["images"] == (360 if n == "all" else int(n))
    assert res["cycles_per_image"] <= 1.05 * res["fold_bound_cycles"]
    top = json.loads((rtl / "top.json").read_text())
    assert res["first_result_cycle"] is not None and top["latency_cycles"] > 0


@pytest.mark.skipif(not _have("verilator"), reason="verilator is not installed (make setup installs it)")
def test_network_sim_is_quiet_and_leaves_little(digits_rtl, tmp_path_factory):
    """`python -m sim` prints its summary line and a progress bar; Verilator's build output and cocotb's banner go
    to log files, and of the build only the simulation executable stays."""
    export_dir, rtl = digits_rtl
    out = tmp_path_factory.getbasetemp() / "netsim-verilator"
    args = ["--export", str(export_dir), "--rtl", str(rtl), "--n", "24", "-o", str(out)]
    r = subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(r.stdout.splitlines()) == 1 and r.stdout.startswith("verilator: 24 images, 0 mismatches")
    for noise in ("c++", "Verilat", "cocotb", "INFO", "make["):
        assert noise not in r.stderr, noise
    builds = list((out / "build").iterdir())
    assert builds and all(
        {f.name for f in b.iterdir()} == {"lutmac_harness", "lutmac-built", "build.log"} for b in builds
    )
    assert "c++" in (builds[0] / "build.log").read_text()
    res = json.loads((out / "results.json").read_text())
    assert "cocotb" in Path(res["log"]).read_text() and Path(res["log"]).parent == out / "run-verilator"
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) < 10e6


@pytest.mark.parametrize("sim", SIMS)
def test_failed_build_names_its_log(sim, tmp_path):
    """A design the simulator cannot build is one error naming the log with the simulator's own words."""
    from sim.runner import build_design

    src = tmp_path / "broken.v"
    src.write_text("module broken(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(SimError, match="full log: ") as e:
        build_design(sim, [src], "broken", tmp_path / "build")
    log = Path(str(e.value).rsplit("full log: ", 1)[1].rstrip(")"))
    assert log.is_file() and "broken.v" in log.read_text() and "\n" not in str(e.value)


@pytest.mark.skipif(not _have("verilator"), reason="verilator is not installed (make setup installs it)")
def test_keep_build_keeps_verilator_files(tmp_path):
    from sim.runner import build_design

    src = tmp_path / "inv.v"
    src.write_text("module inv(input a, output b);\n  assign b = ~a;\nendmodule\n")
    _, build_dir = build_design("verilator", [src], "inv", tmp_path / "build", keep=True)
    assert (build_dir / "Vtop.mk").is_file() and (build_dir / "inv").is_file()


@pytest.mark.parametrize("sim", SIMS)
def test_network_reset_backpressure_and_corruption(sim, digits_rtl, tmp_path_factory):
    from sim.runner import simulate_network

    export_dir, rtl = digits_rtl
    work = tmp_path_factory.getbasetemp() / f"netsim-{sim}"
    n = 40 if sim == "verilator" else 12
    s = simulate_network(export_dir, rtl, sim=sim, n=n, work_dir=work, reset_test=True, progress=False)
    assert s["passed"] and s["mismatches"] == 0 and s["images"] == n
    s = simulate_network(export_dir, rtl, sim=sim, n=n, work_dir=work, gap_rate=80, stall_rate=120, progress=False)
    assert s["passed"] and s["mismatches"] == 0
    s = simulate_network(export_dir, rtl, sim=sim, n=n, work_dir=work, corrupt=True, progress=False)
    assert not s["passed"] and s["mismatches"] == 1 and "image" in s["first_mismatch"]


@pytest.mark.skipif(not _have("icarus"), reason="icarus is not installed (make setup installs it)")
def test_waves_on_request(digits_rtl, tmp_path):
    export_dir, rtl = digits_rtl
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim",
            "--export",
            str(export_dir),
            "--rtl",
            str(rtl),
            "--sim",
            "icarus",
            "--n",
            "2",
            "--quiet",
            "-o",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "WAVES": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert res["waves"] and res["waves"].endswith((".fst", ".vcd")) and os.path.getsize(res["waves"]) > 0


def test_cli_errors(digits_rtl, tmp_path, monkeypatch):
    export_dir, rtl = digits_rtl
    r = _sim_cli("--export", str(export_dir), "--rtl", str(rtl), "--sim", "modelsim", "-o", str(tmp_path / "s"))
    assert r.returncode == 2 and "modelsim" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _sim_cli("--export", str(export_dir), "--rtl", str(tmp_path / "nope"), "-o", str(tmp_path / "s"))
    assert r.returncode == 2 and "make gen" in r.stderr
    r = _sim_cli("--export", str(export_dir), "--rtl", str(rtl), "--n", "999999", "-o", str(tmp_path / "s"))
    assert r.returncode == 2 and "outside" in r.stderr
    assert not (tmp_path / "s" / "results.json").exists()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimError, match="apt-get install iverilog"):
        check_simulator("icarus")
