"""A convolutional network through hw and sim: amaranth.sim and cocotb (Verilator, Icarus) against the golden model,
top.json, no multipliers, mismatch localisation, and gen's refusals for conv nets.

The network (``digits_conv_ps_export`` in conftest.py) is ``8c3p1-mp2-16c3s2p1-10`` on 8x8 digits: padding, stride,
a max-pool and a dense layer after a map. As matrices (rows x columns, vectors per image): conv0 8 x 9 x 64,
conv1 16 x 72 x 4 (8 input channels), fc0 10 x 64 x 1.
"""

import dataclasses
import hashlib
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator
from conftest import have_simulator, run_yosys

from export.golden import GoldenModel
from export.manifest import load_test_set, read_manifest
from hw import HardwareError
from hw.folding import resolve_folding
from hw.layers import image_beats
from hw.network import NetworkTop
from hw.stream_helpers import stream_get_all, stream_put_all

SIMS = [
    pytest.param(
        s, marks=pytest.mark.skipif(not have_simulator(s), reason=f"{s} is not installed (make setup installs it)")
    )
    for s in ("verilator", "icarus")
]
needs_icarus = pytest.mark.skipif(
    not have_simulator("icarus"), reason="icarus is not installed (make setup installs it)"
)

# the folding every CLI test shares: conv0 and conv1 are both bound by their MVU (768 cycles), not their window (576)
PE, SIMD = 2, 3


def _cli(stage, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", stage, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _one_line(stderr):
    return len(stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------- amaranth.sim


def _run_network(export_dir, folding, image_idx, *, gap, stall, seed):
    g = GoldenModel(export_dir)
    images, _ = load_test_set(export_dir)
    images = images[image_idx]
    dut = NetworkTop(layers=g.layers, folding=folding)
    rng = np.random.default_rng(seed)
    got = []

    async def producer(ctx):
        beats = image_beats(images, lanes=dut.lanes_per_beat, group=dut.group)
        assert len(beats) == len(images) * dut.beats_per_image
        await stream_put_all(ctx, dut.i, [[int(v) for v in b] for b in beats], rng=rng, gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_all(ctx, dut.o, len(images), rng=rng, stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    trace = g.run(images)
    classes = np.array([o.cls for o in got])
    scores = np.array([[o.scores[c] for c in range(dut.classes)] for o in got])
    return classes, scores, trace, dut


FOLDINGS = {
    # SIMD 3 divides neither conv1's 8 channels (72 columns) nor fc0's 16-channel pixels; PE 3 no layer's rows
    "pe3-simd3": dict(pe=3, simd=3),
    # SIMD 12 > conv1's 8 channels (and clipped to conv0's 9 columns); PE 16 clipped to conv0's 8 and fc0's 10 rows;
    # conv0 fully parallel (one step per patch) gets a whole-patch window
    "pe16-simd12": dict(pe=16, simd=12),
    # per layer from a FOLDING file: conv1 one row at a time (fc0 then takes one value per beat), fc0 fully serial
    "file": dict(
        pe=4, simd=4, file={"conv0": {"pe": 8, "simd": 1}, "conv1": {"pe": 1, "simd": 8}, "fc0": {"pe": 1, "simd": 1}}
    ),
}


@pytest.mark.parametrize("name, gap, stall", [("pe3-simd3", 0.3, 0.2), ("pe16-simd12", 0.1, 0.5), ("file", 0.5, 0.0)])
def test_network_top_bit_exact(digits_conv_ps_export, tmp_path, name, gap, stall):
    f = FOLDINGS[name]
    g = GoldenModel(digits_conv_ps_export)
    path = None
    if "file" in f:
        path = tmp_path / "folding.json"
        path.write_text(json.dumps(f["file"]))
    folding = resolve_folding(g.layers, pe=f["pe"], simd=f["simd"], folding_file=path)
    assert [p.name for p in g.layers] == ["conv0", "pool0", "conv1", "fc0"]
    idx = np.random.default_rng(len(name)).choice(360, 4, replace=False)
    classes, scores, trace, dut = _run_network(digits_conv_ps_export, folding, idx, gap=gap, stall=stall, seed=7)
    assert (dut.lanes_per_beat, dut.group, dut.beats_per_image) == (1, 1, 64)  # one grey pixel per beat
    assert np.array_equal(scores, trace.scores), (scores, trace.scores)
    assert np.array_equal(classes, trace.classes)


# ---------------------------------------------------------------------------------------------------- CLI end to end


@pytest.fixture(scope="module")
def conv_rtl(digits_conv_ps_export, tmp_path_factory):
    """``python -m hw gen --pe 2 --simd 3`` of the conv net: the RTL directory."""
    rtl = tmp_path_factory.mktemp("conv-rtl") / "rtl"
    r = _cli("hw", "gen", "--export", digits_conv_ps_export, "--pe", PE, "--simd", SIMD, "-o", rtl)
    assert r.returncode == 0, r.stderr
    assert "fold bound 768 cycles/image" in r.stdout, r.stdout
    return rtl


@pytest.mark.parametrize("sim", SIMS)
def test_cli_gen_and_sim_end_to_end(sim, digits_conv_ps_export, conv_rtl, tmp_path):
    out = tmp_path / "sim"
    r = _cli("sim", "--export", digits_conv_ps_export, "--rtl", conv_rtl, "--sim", sim, "--n", 20, "--quiet", "-o", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    top = json.loads((conv_rtl / "top.json").read_text())
    assert (res["simulator"], res["images"], res["mismatches"]) == (sim, 20, 0)
    assert res["passed"] and res["first_mismatch"] is None
    assert res["fold_bound_cycles"] == top["fold_bound_cycles"] == 768
    assert res["cycles_per_image"] <= 1.05 * res["fold_bound_cycles"], res
    assert f"{sim}: 20 images, 0 mismatches" in r.stdout
    # the golden model's accuracy on these 20 images is what the hardware reaches
    g = GoldenModel(digits_conv_ps_export)
    images, labels = load_test_set(digits_conv_ps_export)
    assert res["accuracy"] == pytest.approx(float(np.mean(g.classify(images[:20]) == labels[:20])))


@pytest.fixture(scope="module")
def patch_rtl_run(digits_conv_ps_export, tmp_path_factory):
    """``hw gen --pe 16 --simd 12`` (conv0 fully parallel, conv1 with SIMD beyond its 8 channels: both get a
    whole-patch window) and ``python -m sim --sim icarus --n 12`` of it: ``(rtl, completed process, results)``."""
    if not have_simulator("icarus"):
        pytest.skip("icarus is not installed (make setup installs it)")
    root = tmp_path_factory.mktemp("conv-patch")
    r = _cli("hw", "gen", "--export", digits_conv_ps_export, "--pe", 16, "--simd", 12, "-o", root / "rtl")
    assert r.returncode == 0, r.stderr
    r = _cli(
        "sim",
        "--export",
        digits_conv_ps_export,
        "--rtl",
        root / "rtl",
        "--sim",
        "icarus",
        "--n",
        12,
        "--quiet",
        "-o",
        root / "sim",
    )
    results = root / "sim" / "results.json"
    return root / "rtl", r, (json.loads(results.read_text()) if results.exists() else None)


def test_cli_sim_with_patch_windows(patch_rtl_run):
    _, r, res = patch_rtl_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (res["images"], res["mismatches"]) == (12, 0) and res["passed"]


def test_cli_sim_with_patch_windows_keeps_the_fold_bound(patch_rtl_run):
    rtl, _, res = patch_rtl_run
    top = json.loads((rtl / "top.json").read_text())
    assert res["fold_bound_cycles"] == top["fold_bound_cycles"]
    assert res["cycles_per_image"] <= 1.05 * res["fold_bound_cycles"], res


def test_cli_sim_with_gaps_and_stalls(digits_conv_ps_export, patch_rtl_run, tmp_path):
    """Random input gaps and output stalls (64/256 each)."""
    rtl = patch_rtl_run[0]
    r = _cli(
        "sim",
        "--export",
        digits_conv_ps_export,
        "--rtl",
        rtl,
        "--sim",
        "icarus",
        "--n",
        12,
        "--gap",
        64,
        "--stall",
        64,
        "--quiet",
        "-o",
        tmp_path / "sim",
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path / "sim" / "results.json").read_text())
    assert (res["images"], res["mismatches"], res["gap_rate"], res["stall_rate"]) == (12, 0, 64, 64)
    assert res["passed"]


@needs_icarus
def test_cli_sim_runs_again_into_its_own_output(digits_conv_ps_export, conv_rtl, tmp_path):
    for _ in range(2):
        r = _cli(
            "sim",
            "--export",
            digits_conv_ps_export,
            "--rtl",
            conv_rtl,
            "--sim",
            "icarus",
            "--n",
            1,
            "--quiet",
            "-o",
            tmp_path / "sim",
        )
        assert r.returncode == 0, r.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------- top.json


def top_lanes(layers, entry):
    """Values per beat entering layer ``entry``: the image's channels first, then the PE of the compute layer
    before (a pool passes its input's lanes on)."""
    lanes = layers[0]["in_shape"][0]
    for e in layers[: layers.index(entry)]:
        lanes = e.get("pe", lanes)
    return lanes


def test_top_json_describes_every_layer(digits_conv_ps_export, conv_rtl):
    top = json.loads((conv_rtl / "top.json").read_text())
    manifest = read_manifest(digits_conv_ps_export)
    layers = top["layers"]
    assert [(e["name"], e["kind"], e["in_shape"], e["out_shape"]) for e in layers] == [
        (e["name"], e["kind"], e["in_shape"], e["out_shape"]) for e in manifest["layers"]
    ]
    assert top["input_shape"] == [1, 8, 8] and top["pixels"] == 64
    assert top["beats_per_image"] == 64 and top["ports"]["in"]["lanes"] == 1 and top["ports"]["in"]["group"] == 1
    for e, m in zip(layers, manifest["layers"]):
        if e["kind"] == "maxpool2d":
            assert "pe" not in e and "simd" not in e
            c, h, w = e["in_shape"]
            assert e["cycles"] >= h * w  # one beat per input pixel at least
            continue
        for key in ("pe", "simd", "sf", "nf", "vectors", "cycles"):
            assert isinstance(e[key], int), (e["name"], key)
        if e["kind"] == "conv2d":
            c = e["in_shape"][0]
            rows, columns = m["out_channels"], m["kernel"] ** 2 * c
            vectors = e["out_shape"][1] * e["out_shape"][2]
            # a line buffer emits a patch as K*K beats of one pixel (at 2 x 3 no layer is fast enough for the
            # whole-patch window to pay)
            assert e["window"] == "SlidingWindow"
            assert e["window_out_beats"] == vectors * m["kernel"] ** 2
            assert e["window_in_beats"] == e["in_shape"][1] * e["in_shape"][2] * math.ceil(c / top_lanes(layers, e))
            assert e["cycles"] >= max(e["window_out_beats"], e["window_in_beats"])
        else:
            rows, columns, vectors = m["out_features"], m["in_features"], 1
        assert (e["out_features"], e["in_features"], e["vectors"]) == (rows, columns, vectors)
        assert (e["pe"], e["simd"]) == (min(PE, rows), min(SIMD, columns))
        assert (e["sf"], e["nf"]) == (math.ceil(columns / e["simd"]), math.ceil(rows / e["pe"]))
        assert e["cycles"] >= vectors * math.ceil(columns / e["simd"]) * math.ceil(rows / e["pe"])
    # conv0 8 x 9 on 2 x 3: 64 * 3 * 4; conv1 16 x 72: 4 * 24 * 8
    assert [e["cycles"] for e in layers if e["kind"] == "conv2d"] == [768, 768]
    assert top["fold_bound_cycles"] == max([e["cycles"] for e in layers] + [top["beats_per_image"]]) == 768
    assert top["macs_per_cycle"] == 3 * PE * SIMD


def test_conv_verilog_has_no_multiplier(conv_rtl, tmp_path):
    text = (conv_rtl / "top.v").read_text()
    assert "$readmem" not in text and "module lutmac_top" in text
    shutil.copy(conv_rtl / "top.v", tmp_path / "top.v")
    run_yosys("read_verilog top.v; hierarchy -top lutmac_top; proc; tee -o stat.txt stat", tmp_path)
    report = (tmp_path / "stat.txt").read_text()
    assert "$mul" not in report and "$add" in report
    assert "$mem" in report  # the sliding windows' line buffers and the weight memories


# ---------------------------------------------------------------------------------------------------- localisation


def _flip_row(p, row):
    w = p.weights.copy()
    w[row] = -w[row]
    return dataclasses.replace(p, weights=w)


def _differing_row(export_dir, layer_name, image_index):
    """A row of ``layer_name`` whose flip changes that layer's golden output on the image (given its golden input)."""
    g = GoldenModel(export_dir)
    images, _ = load_test_set(export_dir)
    i = [p.name for p in g.layers].index(layer_name)
    trace = g.run(images[image_index : image_index + 1])
    x = images[image_index : image_index + 1] if i == 0 else trace.activations[i - 1]
    _, want = g.layer(i, x)
    original = g.layers[i]
    for row in range(original.rows):
        g.layers[i] = _flip_row(original, row)
        _, got = g.layer(i, x)
        if not np.array_equal(got, want):
            return row
    raise AssertionError(f"no single row flip of {layer_name} changes its output on image {image_index}")


def _corrupted_copy(src, dst, layer, row):
    """A copy of export ``src`` whose ``layer`` has weight row ``row`` flipped, its hash fixed so it loads."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    entry = next(e for e in manifest["layers"] if e["name"] == layer)
    path = dst / entry["weights"]
    data = bytearray(path.read_bytes())
    columns = int.from_bytes(data[12:16], "little")
    stride = -(-columns // 8)
    for j in range(columns):
        data[16 + row * stride + j // 8] ^= 1 << (j % 8)
    path.write_bytes(bytes(data))
    entry["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.fixture(scope="module")
def corrupted_run(digits_conv_ps_export, tmp_path_factory):
    """RTL generated from a copy of the export with a row of conv1 flipped, simulated (Icarus) against the original
    export with ``python -m sim``: ``(completed process, results.json)``."""
    if not have_simulator("icarus"):
        pytest.skip("icarus is not installed (make setup installs it)")
    root = tmp_path_factory.mktemp("conv-corrupted")
    row = _differing_row(digits_conv_ps_export, "conv1", 0)
    _corrupted_copy(digits_conv_ps_export, root / "export", "conv1", row)
    r = _cli("hw", "gen", "--export", root / "export", "--pe", PE, "--simd", SIMD, "-o", root / "rtl")
    assert r.returncode == 0, r.stderr
    assert json.loads((root / "rtl" / "top.json").read_text())["export"] == str(root / "export")
    r = _cli(
        "sim",
        "--export",
        digits_conv_ps_export,
        "--rtl",
        root / "rtl",
        "--sim",
        "icarus",
        "--n",
        3,
        "--quiet",
        "-o",
        root / "sim",
    )
    results = root / "sim" / "results.json"
    return r, (json.loads(results.read_text()) if results.exists() else None), root / "sim"


def test_sim_refuses_rtl_from_another_export(corrupted_run):
    """RTL generated from another export (here: one with a conv1 row flipped) is refused before simulating: the
    golden model of --export does not describe it."""
    r, res, _ = corrupted_run
    assert r.returncode == 2 and _one_line(r.stderr), r.stdout[-2000:] + r.stderr[-2000:]
    assert "was generated from another export" in r.stderr and res is None


def test_sim_names_the_layer_that_differs(digits_conv_ps_export, tmp_path, monkeypatch):
    """The whole path in one process: hardware whose conv1 differs from the golden model (hw.network and
    hw.layers build it with a row of conv1 flipped), simulated against the export: the mismatch is reported and
    localised to conv1 by sim's own layer benches."""
    if not have_simulator("icarus"):
        pytest.skip("icarus is not installed (make setup installs it)")
    import hw.layers
    import hw.network
    from hw.gen import generate
    from sim.runner import simulate_network

    row = _differing_row(digits_conv_ps_export, "conv1", 0)
    original = hw.layers.build_layers

    def corrupted(layers, folding, **kw):
        return original([_flip_row(p, row) if p.name == "conv1" else p for p in layers], folding, **kw)

    monkeypatch.setattr(hw.layers, "build_layers", corrupted)
    monkeypatch.setattr(hw.network, "build_layers", corrupted)
    generate(digits_conv_ps_export, tmp_path / "rtl", pe=PE, simd=SIMD, warn=lambda s: None)
    s = simulate_network(
        digits_conv_ps_export, tmp_path / "rtl", sim="icarus", n=2, work_dir=tmp_path / "sim", progress=False
    )
    assert s["mismatches"] >= 1 and not s["passed"]
    assert s["first_difference"].startswith("layer conv1 (conv2d) is the first to differ alone"), s


def test_locate_names_the_layer_whose_hardware_differs(digits_conv_ps_export, conv_rtl, corrupted_run, monkeypatch):
    """sim.locate on its own: unpatched every layer matches alone; with conv1's hardware built from flipped weights
    (hw.layers.build_layers patched) it names conv1."""
    import hw.layers
    from sim.locate import locate_mismatch

    top = json.loads((conv_rtl / "top.json").read_text())
    work = corrupted_run[2].parent / "locate"
    msg = locate_mismatch(digits_conv_ps_export, top, 3, sim="icarus", work_dir=work)
    assert msg.startswith("every layer matches the golden model alone"), msg

    row = _differing_row(digits_conv_ps_export, "conv1", 3)
    original = hw.layers.build_layers

    def corrupted(layers, folding, **kw):
        layers = [_flip_row(p, row) if p.name == "conv1" else p for p in layers]
        return original(layers, folding, **kw)

    monkeypatch.setattr(hw.layers, "build_layers", corrupted)
    msg = locate_mismatch(digits_conv_ps_export, top, 3, sim="icarus", work_dir=work)
    assert msg.startswith("layer conv1 (conv2d) is the first to differ alone"), msg
    assert "expected" in msg and "got" in msg


# ---------------------------------------------------------------------------------------------------- refusals


def test_gen_refuses_hardwired_conv_and_folding_a_pool(digits_conv_ps_export, tmp_path):
    r = _cli("hw", "gen", "--export", digits_conv_ps_export, "--hardwired", "conv0", "-o", tmp_path / "a")
    assert r.returncode == 2 and _one_line(r.stderr), r.stderr
    assert "'conv0' is a conv layer; only dense layers can be hard-wired" in r.stderr
    assert not (tmp_path / "a").exists()

    (tmp_path / "fold.json").write_text(json.dumps({"conv0": {"pe": 2, "simd": 3}, "pool0": {"pe": 2}}))
    r = _cli("hw", "gen", "--export", digits_conv_ps_export, "--folding", tmp_path / "fold.json", "-o", tmp_path / "b")
    assert r.returncode == 2 and _one_line(r.stderr), r.stderr
    assert "'pool0' is a max-pool layer, which has no folding" in r.stderr
    assert "conv0, conv1, fc0" in r.stderr and not (tmp_path / "b").exists()

    r = _cli("hw", "gen", "--export", digits_conv_ps_export, "--hardwired", "pool0", "-o", tmp_path / "c")
    assert r.returncode == 2 and _one_line(r.stderr) and "'pool0' is a max-pool layer" in r.stderr
    assert not (tmp_path / "c").exists()


def test_folding_file_cannot_hardwire_a_conv_layer(digits_conv_ps_export, tmp_path):
    g = GoldenModel(digits_conv_ps_export)
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"conv0": {"hardwired": True}}))
    with pytest.raises(HardwareError, match="only dense layers can be hard-wired"):
        resolve_folding(g.layers, pe=2, simd=3, folding_file=path)
