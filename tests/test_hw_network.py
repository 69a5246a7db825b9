"""The whole generated network against the golden model, and the generator's files and errors."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator
from conftest import run_yosys

from export.golden import GoldenModel
from export.manifest import load_test_set
from hw.folding import resolve_folding
from hw.layers import image_beats
from hw.network import NetworkTop, UnitOptions
from hw.stream_helpers import stream_get_all, stream_put_all


def simulate_network(export_dir, n, *, pe, simd, gap=0.0, stall=0.0, seed=0, tree_pipeline=0, hardwired=()):
    g = GoldenModel(export_dir)
    images, _ = load_test_set(export_dir)
    dut = NetworkTop(
        layers=g.layers,
        folding=resolve_folding(g.layers, pe=pe, simd=simd, hardwired=hardwired),
        options=UnitOptions(tree_pipeline=tree_pipeline),
    )
    rng = np.random.default_rng(seed)
    got, times = [], {}

    async def producer(ctx):
        times["start"] = None
        beats = image_beats(images[:n], lanes=dut.lanes_per_beat, group=dut.group)
        await stream_put_all(ctx, dut.i, [[int(v) for v in b] for b in beats], rng=rng, gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_all(ctx, dut.o, n, rng=rng, stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    trace = g.run(images[:n])
    classes = np.array([o.cls for o in got])
    scores = np.array([[o.scores[c] for c in range(dut.classes)] for o in got])
    return classes, scores, trace, dut


@pytest.mark.parametrize("pe, simd, gap, stall", [(16, 64, 0.2, 0.2), (5, 7, 0.0, 0.5), (64, 3, 0.5, 0.0)])
def test_network_bit_exact_on_digits(digits_export, pe, simd, gap, stall):
    classes, scores, trace, _ = simulate_network(digits_export[1], 12, pe=pe, simd=simd, gap=gap, stall=stall)
    assert np.array_equal(scores, trace.scores)
    assert np.array_equal(classes, trace.classes)


def test_network_two_bit_odd_sizes(digits_export_a2):
    classes, scores, trace, _ = simulate_network(
        digits_export_a2[1], 10, pe=7, simd=10, gap=0.1, stall=0.1, tree_pipeline=2
    )
    assert np.array_equal(scores, trace.scores) and np.array_equal(classes, trace.classes)


@pytest.mark.parametrize("tree_pipeline", [2])
def test_network_with_hardwired_layers(digits_export_a2, tree_pipeline):
    """Constant-weight (hard-wired) output and hidden layers, next to folded ones, stay bit-exact."""
    classes, scores, trace, dut = simulate_network(
        digits_export_a2[1], 8, pe=4, simd=16, gap=0.2, stall=0.2, tree_pipeline=tree_pipeline, hardwired=("fc1", "fc2")
    )
    assert np.array_equal(scores, trace.scores) and np.array_equal(classes, trace.classes)
    assert [f.hardwired for f in dut.folding] == [False, True, True]


def test_gen_hardwired_layer_has_no_weight_memory(digits_export, tmp_path):
    r = _gen(
        "--export",
        str(digits_export[1]),
        "--pe",
        "4",
        "--simd",
        "16",
        "--hardwired",
        "fc3",
        "-o",
        str(tmp_path / "rtl"),
    )
    assert r.returncode == 0, r.stderr
    top = json.loads((tmp_path / "rtl" / "top.json").read_text())
    fc3 = top["layers"][-1]
    assert fc3["hardwired"] and (fc3["pe"], fc3["simd"]) == (fc3["out_features"], fc3["in_features"])
    text = (tmp_path / "rtl" / "top.v").read_text()
    assert "weights0" in text and "fc3" in text
    assert not any("fc3" in line and "weights" in line for line in text.splitlines() if "reg " in line)
    r = _gen("--export", str(digits_export[1]), "--hardwired", "fc9", "-o", str(tmp_path / "bad"))
    assert r.returncode == 2 and "unknown layer 'fc9'" in r.stderr and not (tmp_path / "bad").exists()


def _hw_cli(*args):
    return subprocess.run([sys.executable, "-m", "hw", *map(str, args)], capture_output=True, text=True)


def _gen(*args):
    return _hw_cli("gen", *args)


def test_gen_writes_self_contained_verilog_without_multipliers(digits_export, tmp_path):
    r = _gen("--export", str(digits_export[1]), "--pe", "8", "--simd", "16", "-o", str(tmp_path / "rtl"))
    assert r.returncode == 0, r.stderr
    top = json.loads((tmp_path / "rtl" / "top.json").read_text())
    for key in ("ports", "beats_per_image", "latency_cycles", "fold_bound_cycles", "layers"):
        assert key in top
    assert [(x["pe"], x["simd"]) for x in top["layers"]] == [(8, 16), (8, 16), (8, 16), (8, 16)]
    assert top["fold_bound_cycles"] == max(x["cycles"] for x in top["layers"]) == 4 * 8
    text = (tmp_path / "rtl" / "top.v").read_text()
    assert "$readmem" not in text and "module lutmac_top" in text
    # yosys: no $mul cell anywhere after proc
    run_yosys("read_verilog rtl/top.v; hierarchy -top lutmac_top; proc; tee -o stat.txt stat", tmp_path)
    report = (tmp_path / "stat.txt").read_text()
    assert "$mul" not in report and "$add" in report


@pytest.mark.parametrize(
    "choice, styled",
    [("auto", {"fc0", "fc1", "fc2"}), ("block", {"fc0", "fc1", "fc2", "fc3"}), ("tool", set())],
)
def test_gen_weight_memory_marks_weight_roms(digits_export, tmp_path, choice, styled):
    """tfc PE4 x SIMD16: fc0..fc2 keep 16 row folds x 4 column folds = 64 words per PE ROM, fc3 3 x 4 = 12. auto
    asks for block RAM above 16 words, block everywhere, tool nowhere: one ``rom_style`` attribute per PE ROM."""
    from hw.mvu import BLOCK_ROM_MIN_DEPTH, weight_rom_style

    out = tmp_path / "rtl"
    r = _gen("--export", str(digits_export[1]), "--pe", "4", "--simd", "16", "--weight-memory", choice, "-o", str(out))
    assert r.returncode == 0, r.stderr
    top = json.loads((out / "top.json").read_text())
    assert top["weight_memory"] == choice
    assert [x["sf"] * x["nf"] for x in top["layers"]] == [64, 64, 64, 12]
    marks = (out / "top.v").read_text().count('(* rom_style = "block" *)')
    assert marks == sum(x["pe"] for x in top["layers"] if x["name"] in styled)
    assert weight_rom_style("auto", depth=BLOCK_ROM_MIN_DEPTH) is None
    assert weight_rom_style("auto", depth=BLOCK_ROM_MIN_DEPTH + 1) == "block"
    assert weight_rom_style("block", depth=None) is None  # a hard-wired layer has no ROM


def test_gen_search_pipeline_takes_one_step_per_stage(digits_export, tmp_path):
    """tfc PE4 x SIMD16 (SF = 4 for fc1, fc2): ``staged`` searches in stages of 3, 3 and 2 steps, ``pipeline`` in
    eight one-step stages, with a larger LUT estimate and the same number of cycles per image."""
    from hw.gen import generate

    desc = {
        s: generate(digits_export[1], tmp_path / s, pe=4, simd=16, search=s, warn=lambda _: None)
        for s in ("staged", "pipeline")
    }
    steps = {s: [x["search_steps"] for x in d["layers"]] for s, d in desc.items()}
    assert steps["staged"][1:3] == [[3, 3, 2]] * 2 and steps["pipeline"][:3] == [[1] * 8] * 3
    assert steps["staged"][3] is None and steps["pipeline"][3] is None  # the output layer's scores
    assert [d["search"] for d in desc.values()] == ["staged", "pipeline"]
    assert desc["pipeline"]["estimated_luts"] > desc["staged"]["estimated_luts"]
    assert desc["pipeline"]["fold_bound_cycles"] == desc["staged"]["fold_bound_cycles"]
    # hw fold --luts prices the search it is told: within 3,000 LUTs the staged searches' folding (2 x 13 per hidden
    # layer, SF = 5) would be 4,384 as one-step searches, so pipeline gets a smaller one
    from hw.folding import estimate_luts, resolve_folding
    from hw.gen import load_export

    _, layers = load_export(digits_export[1])
    budget, lanes = 3000, {}
    for s in ("staged", "pipeline"):
        r = _hw_cli("fold", "--export", digits_export[1], "--luts", budget, "--search", s, "-o", tmp_path / f"{s}.json")
        assert r.returncode == 0, r.stderr
        folding = resolve_folding(layers, pe=1, simd=1, folding_file=tmp_path / f"{s}.json")
        assert estimate_luts(layers, folding, "portable", search=s) <= budget
        lanes[s] = sum(f.pe * f.simd for f in folding)
    assert lanes["pipeline"] < lanes["staged"]


def test_top_json_records_the_unit_options_a_later_stage_rebuilds(digits_export, tmp_path):
    """`top.json` holds every :class:`UnitOptions` field, and `sim`'s layer locator rebuilds the same units from it;
    a bad option is refused before the export is read."""
    from hw import HardwareError
    from hw.gen import generate

    options = UnitOptions(
        tree_pipeline=2, tree_target="xc7", buffers="registers", weight_memory="block", search="pipeline"
    )
    desc = generate(digits_export[1], tmp_path / "rtl", pe=4, simd=16, warn=lambda s: None, **{
        "tree_pipeline": 2, "target": "xc7", "buffers": "registers", "weight_memory": "block",
        "search": "pipeline"})  # fmt: skip
    assert UnitOptions.from_description(desc) == options
    assert UnitOptions.from_description({}) == UnitOptions()  # a top.json from before the keys existed
    bads = (dict(buffers="ram"), dict(weight_memory="bram"), dict(tree_target="ice40"), dict(tree_pipeline=-1))
    for bad in bads + (dict(search="fast"),):
        with pytest.raises(HardwareError, match=next(iter(bad)).split("_")[-1]):
            UnitOptions(**bad)
    with pytest.raises(HardwareError, match="buffers must be auto or registers, not 'ram'"):
        generate(tmp_path / "no-export", tmp_path / "x", pe=4, simd=16, buffers="ram")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--pe", "0"], "pe must be"),
        (["--simd", "-3"], "simd must be"),
        (["--tree-pipeline", "-1"], "tree_pipeline"),
    ],
)
def test_gen_bad_input(digits_export, tmp_path, args, words):
    r = _gen("--export", str(digits_export[1]), *args, "-o", str(tmp_path / "rtl"))
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "rtl").exists()


def test_gen_bad_folding_and_broken_export(digits_export, tmp_path):
    (tmp_path / "fold.json").write_text(json.dumps({"fc9": {"pe": 2}}))
    r = _gen("--export", str(digits_export[1]), "--folding", str(tmp_path / "fold.json"), "-o", str(tmp_path / "a"))
    assert r.returncode == 2 and "unknown layer 'fc9'" in r.stderr and not (tmp_path / "a").exists()
    broken = tmp_path / "export"
    shutil.copytree(digits_export[1], broken)
    (broken / "fc1.weights").write_bytes(b"LMWB")
    r = _gen("--export", str(broken), "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and "export check failed" in r.stderr and "fc1.weights" in r.stderr
    assert not (tmp_path / "b").exists()


def test_gen_folding_file_and_lut_budget_warning(digits_export, tmp_path):
    (tmp_path / "fold.json").write_text(json.dumps({"fc0": {"pe": 4, "simd": 8}, "fc3": {"pe": 3}}))
    r = _gen(
        "--export",
        str(digits_export[1]),
        "--folding",
        str(tmp_path / "fold.json"),
        "--lut-budget",
        "100",
        "-o",
        str(tmp_path / "rtl"),
    )
    assert r.returncode == 0 and "exceed the budget of 100" in r.stderr
    top = json.loads((tmp_path / "rtl" / "top.json").read_text())
    assert (top["layers"][0]["pe"], top["layers"][0]["simd"], top["layers"][3]["pe"]) == (4, 8, 3)


def test_pe_cli(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "hw", "pe", "--lanes", "7", "--bits", "4", "-o", str(tmp_path / "pe.v")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "module pe" in (tmp_path / "pe.v").read_text()
    r = subprocess.run(
        [sys.executable, "-m", "hw", "pe", "--lanes", "0", "--bits", "4", "-o", str(tmp_path / "x.v")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and not (tmp_path / "x.v").exists()


def test_fast_memory_init_emits_identical_verilog():
    """hw.fast_emit replaces a private Amaranth emitter: its output must stay byte-identical to Amaranth's own."""
    from amaranth.back import verilog
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    from hw.fast_emit import fast_memory_init

    class Roms(wiring.Component):
        addr: In(5)
        data: Out(13 + 1 + 64)

        def elaborate(self, platform):
            m = Module()
            rng = np.random.default_rng(3)
            outs = []
            for width, depth in ((13, 20), (1, 32), (64, 7)):
                mem = m.submodules[f"rom{width}"] = Memory(
                    shape=width,
                    depth=depth,
                    init=[int(v) for v in rng.integers(0, 1 << width, depth - 2, dtype=np.uint64)],
                )
                port = mem.read_port(domain="comb")
                m.d.comb += port.addr.eq(self.addr)
                outs.append(port.data)
            m.d.comb += self.data.eq(Cat(*outs))
            return m

    from amaranth.hdl import Cat

    plain = verilog.convert(Roms(), name="roms", emit_src=False)
    with fast_memory_init():
        fast = verilog.convert(Roms(), name="roms", emit_src=False)
    assert fast == plain and "13'h" in plain
