"""AXI4-Stream wrapper (`hw gen --axis`) and module-name prefixes (`hw gen --name`).

The wrapper's framing policy (hw/axis.py): the network counts beats_per_image beats; an early s_axis_tlast completes
the image with zero beats, a missing one drops beats up to the next tlast; the result of such an image has
m_axis_tuser = 1 and frame_error goes high (sticky). Checked in Amaranth's simulator against a Python model of that
policy (a mock core that returns its image's beats) and on the real tiny network against the golden model; the
HDL harness then runs the generated Verilog bit-exact on Verilator and Icarus with valid gaps and ready stalls.
"""

import json
import random
import re

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from conftest import have_simulator, run_yosys

from hw import HardwareError
from hw.axis import AxisWrapper, byte_width

SIMS = [
    pytest.param(s, marks=pytest.mark.skipif(not have_simulator(s), reason=f"{s} is not installed"))
    for s in ("verilator", "icarus")
]


class _MockCore(wiring.Component):
    """Takes ``n`` beats of 8 bits, returns them concatenated (first beat at bit 0): any misalignment shows."""

    def __init__(self, n):
        self.n = n
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8 * n))})

    def elaborate(self, platform):
        m = Module()
        acc = Signal(8 * self.n)
        k = Signal(range(max(2, self.n)))
        m.d.comb += self.i.ready.eq(~self.o.valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            word = self.i.payload if self.n == 1 else (acc >> 8) | (self.i.payload << (8 * (self.n - 1)))
            with m.If(k == self.n - 1):
                m.d.sync += [k.eq(0), self.o.payload.eq(word), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += [k.eq(k + 1), acc.eq(word)]
        return m


def _policy(frames, n):
    """What the wrapper promises, per tlast-framed image: the beats the core sees and the tuser flag."""
    return [((f + [0] * n)[:n], int(len(f) != n)) for f in frames]


def _run(dut, frames, *, seed, gap=0.3, stall=0.3, results=None, timeout_cycles=20000):
    """Stream ``frames`` (lists of tdata) with tlast on each frame's last beat; collect ``results`` result words as
    ``(tdata, tlast, tuser)``; returns them and the final frame_error."""
    rng = random.Random(seed)
    beats = [(v, int(j == len(f) - 1)) for f in frames for j, v in enumerate(f)]
    results = len(frames) if results is None else results
    got, state = [], {}

    async def producer(ctx):
        ctx.set(dut.aresetn, 0)  # two rising edges in reset (a tick trigger would end on the reset)
        await ctx.delay(3e-8)
        ctx.set(dut.aresetn, 1)
        for value, last in beats:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(dut.s_axis_tvalid, 1)
            ctx.set(dut.s_axis_tdata, value)
            ctx.set(dut.s_axis_tlast, last)
            await ctx.tick().until(dut.s_axis_tready)
            ctx.set(dut.s_axis_tvalid, 0)

    async def consumer(ctx):
        await ctx.delay(3e-8)
        for _ in range(results):
            while rng.random() < stall:
                await ctx.tick()
            ctx.set(dut.m_axis_tready, 1)
            got.append(
                await ctx.tick().sample(dut.m_axis_tdata, dut.m_axis_tlast, dut.m_axis_tuser).until(dut.m_axis_tvalid)
            )
            ctx.set(dut.m_axis_tready, 0)
        await ctx.tick().repeat(5)
        state["frame_error"] = ctx.get(dut.frame_error)
        state["extra"] = ctx.get(dut.m_axis_tvalid)

    sim = Simulator(dut)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run_until(1e-8 * timeout_cycles)
    assert len(got) == results, f"{len(got)} of {results} results before the time limit (wedged?)"
    return [tuple(int(x) for x in r) for r in got], state["frame_error"], state["extra"]


@pytest.mark.parametrize("n, depth", [(4, 3), (3, 1), (1, 2)])
def test_wrapper_framing_policy(n, depth):
    """Random frames, right and wrong lengths, random gaps and stalls: one result per tlast, in order, each the
    policy's beats, tuser on exactly the misframed ones, frame_error sticky; nothing wedges."""
    rng = random.Random(n * 10 + depth)
    lengths = [n, n, max(1, n - 2), n, n + 2, n, 1, n, 2 * n + 1, n, n]
    frames = [[rng.randrange(256) for _ in range(k)] for k in lengths]
    dut = AxisWrapper(_MockCore(n), beats_per_image=n, flag_depth=depth)
    got, err, extra = _run(dut, frames, seed=n + depth)
    want = _policy(frames, n)
    for k, ((data, last, user), (beats, flag)) in enumerate(zip(got, want)):
        assert data == sum(b << (8 * j) for j, b in enumerate(beats)), f"result {k}"
        assert (last, user) == (1, flag), f"result {k}: tlast {last} tuser {user}, expected 1 {flag}"
    assert err == int(any(len(f) != n for f in frames)) and not extra


def test_wrapper_well_framed_sets_no_error():
    frames = [[k, k + 1, k + 2] for k in range(0, 60, 3)]
    got, err, _ = _run(AxisWrapper(_MockCore(3), beats_per_image=3, flag_depth=2), frames, seed=5, gap=0.5, stall=0.6)
    assert [g[2] for g in got] == [0] * len(frames) and err == 0
    assert [g[0] for g in got] == [f[0] | f[1] << 8 | f[2] << 16 for f in frames]


def test_wrapper_ports():
    dut = AxisWrapper(_MockCore(3), beats_per_image=3)
    names = {name: (member.flow, member.shape) for name, member in dut.signature.members.items()}
    assert names["s_axis_tdata"] == (In, 8) and names["m_axis_tdata"] == (Out, 24)
    assert {
        "aclk",
        "aresetn",
        "s_axis_tvalid",
        "s_axis_tready",
        "s_axis_tlast",
        "m_axis_tvalid",
        "m_axis_tready",
        "m_axis_tlast",
        "m_axis_tuser",
        "frame_error",
    } <= set(names)
    assert [byte_width(b) for b in (1, 8, 9, 128, 174)] == [8, 8, 16, 128, 176]
    with pytest.raises(ValueError):
        AxisWrapper(_MockCore(3), beats_per_image=0)


def test_wrapper_on_the_network_against_golden(tiny_export):
    """The tiny network behind the wrapper: well-framed images exact; a short image's result is the golden model's
    for that image zero-padded, a long one's for its first beats_per_image beats, both with tuser."""
    from export.golden import GoldenModel
    from export.manifest import load_test_set
    from hw.gen import choose_folding, load_export
    from hw.layers import image_beats
    from hw.network import NetworkTop

    _, layers = load_export(tiny_export)
    net = NetworkTop(layers=layers, folding=choose_folding(layers, pe=4, simd=16))
    n, lanes = net.beats_per_image, net.lanes_per_beat
    assert n >= 3
    golden = GoldenModel(tiny_export)
    images, _ = load_test_set(tiny_export, golden.manifest)
    images = images[:5]
    beats = image_beats(images, lanes=lanes, group=images[0].size).reshape(5, n, lanes)
    words = [[int(sum(int(v) << (8 * j) for j, v in enumerate(b))) for b in img] for img in beats]
    frames = [words[0], words[1][:2], words[2], words[3] + [words[4][0], 7], words[4]]
    seen = images.copy().reshape(5, -1)
    seen[1, 2 * lanes :] = 0  # the short image, completed with zero beats
    trace = golden.run(seen.reshape(images.shape))
    got, err, _ = _run(AxisWrapper(net, beats_per_image=n, flag_depth=2), frames, seed=3)
    layout = net.o.payload.shape()
    cls_bits, s_off, s_bits = layout["cls"].shape.width, layout["scores"].offset, net.score_bits
    for k, (data, last, user) in enumerate(got):
        scores = [(data >> (s_off + j * s_bits)) & ((1 << s_bits) - 1) for j in range(net.classes)]
        scores = [s - (1 << s_bits) if s >> (s_bits - 1) else s for s in scores]
        assert (data & ((1 << cls_bits) - 1), scores) == (int(trace.classes[k]), trace.scores[k].tolist()), k
        assert (last, user) == (1, int(k in (1, 3))), k
    assert err == 1


# --- generated Verilog -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rtls(tiny_export, tmp_path_factory):
    """The tiny network three ways: plain default (`lutmac_top`), `--axis --name net_b`, `--name net_c --target xc7`."""
    from hw.__main__ import main

    root = tmp_path_factory.mktemp("axis-rtl")
    for sub, extra in (
        ("plain", []),
        ("axis", ["--axis", "--name", "net_b"]),
        ("named", ["--name", "net_c", "--target", "xc7", "--tree-pipeline", "1"]),
    ):
        assert (
            main(["gen", "--export", str(tiny_export), "--pe", "4", "--simd", "16", *extra, "-o", str(root / sub)]) == 0
        )
    return tiny_export, root


def _modules(path):
    return re.findall(r"^module\s+\\?([^\s(]+)", path.read_text(), flags=re.M)


def test_axis_top_json_and_ports(rtls):
    _, root = rtls
    t = json.loads((root / "axis" / "top.json").read_text())
    plain = json.loads((root / "plain" / "top.json").read_text())
    assert t["interface"] == "axis" and plain["interface"] == "stream" and t["top"] == "net_b_top"
    assert (t["clock"], t["reset"], t["reset_active"]) == ("aclk", "aresetn", "low")
    pin, pout = t["ports"]["in"], t["ports"]["out"]
    assert (pin["payload"], pin["valid"], pin["ready"], pin["last"]) == (
        "s_axis_tdata",
        "s_axis_tvalid",
        "s_axis_tready",
        "s_axis_tlast",
    )
    assert (pout["payload"], pout["last"], pout["user"]) == ("m_axis_tdata", "m_axis_tlast", "m_axis_tuser")
    assert pin["width"] % 8 == 0 and pout["width"] % 8 == 0
    assert pin["data_bits"] == plain["ports"]["in"]["width"] and pout["data_bits"] == plain["ports"]["out"]["width"]
    assert pin["width"] == 8 * -(-pin["data_bits"] // 8) and pout["width"] == 8 * -(-pout["data_bits"] // 8)
    assert pout["class"] == plain["ports"]["out"]["class"] and pout["scores"] == plain["ports"]["out"]["scores"]
    assert t["core"]["ports"] == plain["ports"] and t["beats_per_image"] == plain["beats_per_image"]
    assert t["latency_cycles"] == plain["latency_cycles"] and t["fold_bound_cycles"] == plain["fold_bound_cycles"]
    head = (root / "axis" / "top.v").read_text().split("endmodule")[0]
    for direction, name, width in [
        ("input", "s_axis_tdata", pin["width"]),
        ("output", "m_axis_tdata", pout["width"]),
        ("input", "aclk", 1),
        ("input", "aresetn", 1),
        ("output", "s_axis_tready", 1),
        ("input", "s_axis_tlast", 1),
        ("output", "m_axis_tlast", 1),
        ("output", "frame_error", 1),
    ]:
        decl = f"{direction} [{width - 1}:0] {name};" if width > 1 else f"{direction} {name};"
        assert decl in head, decl
    assert not re.search(r"^\s*(input|output)[^;]*\b(clk|rst)\b", head, flags=re.M)


def test_module_prefixes(rtls):
    """Every module of a prefixed top.v carries the prefix, the default stays lutmac_, the sets are disjoint."""
    _, root = rtls
    plain, axis, named = (_modules(root / s / "top.v") for s in ("plain", "axis", "named"))
    assert "lutmac_top" in plain and all(m.startswith("lutmac_") for m in plain)
    assert "net_b_top" in axis and all(m.startswith("net_b_") for m in axis)
    assert "net_c_top" in named and all(m.startswith("net_c_") for m in named)
    assert any(m.startswith("net_c_pe_l") for m in named) and any(m.startswith("lutmac_pe_l") for m in plain)
    assert not set(plain) & set(axis) and not set(plain) & set(named) and not set(axis) & set(named)
    assert json.loads((root / "named" / "top.json").read_text())["top"] == "net_c_top"


def test_two_networks_in_one_design(rtls, tmp_path):
    """yosys reads the default, the AXIS and the xc7-netlist networks into one design beside a top that instantiates
    all three: no module clashes, every instance resolves; two default networks do clash."""
    _, root = rtls
    for s in ("plain", "axis", "named"):
        (tmp_path / f"{s}.v").write_text((root / s / "top.v").read_text())
    (tmp_path / "prims.v").write_text((root / "named" / "sim_models.v").read_text())
    (tmp_path / "both.v").write_text("""
module both(input clk, input rst, input [127:0] d, input v, output [7:0] r);
  wire [173:0] a_out; wire [175:0] b_out; wire [173:0] c_out;
  lutmac_top a (.clk(clk), .rst(rst), .i__payload(d), .i__valid(v), .o__ready(1'b1), .o__payload(a_out));
  net_b_top b (.aclk(clk), .aresetn(~rst), .s_axis_tdata(d), .s_axis_tvalid(v), .s_axis_tlast(1'b0),
               .m_axis_tready(1'b1), .m_axis_tdata(b_out));
  net_c_top c (.clk(clk), .rst(rst), .i__payload(d), .i__valid(v), .o__ready(1'b1), .o__payload(c_out));
  assign r = a_out[7:0] ^ b_out[7:0] ^ c_out[7:0];
endmodule
""")
    run_yosys(
        "read_verilog plain.v axis.v named.v prims.v both.v\nhierarchy -check -top both\ntee -o mods.txt ls\n", tmp_path
    )
    mods = (tmp_path / "mods.txt").read_text()
    assert "lutmac_top" in mods and "net_b_top" in mods and "net_c_top" in mods
    from boards import BoardsError

    (tmp_path / "again.v").write_text((root / "plain" / "top.v").read_text())
    with pytest.raises(BoardsError, match=r"Re-definition of module .\\lutmac_top"):
        run_yosys("read_verilog plain.v again.v\nhierarchy -check\n", tmp_path)


def test_bad_name_refused(tiny_export, tmp_path):
    from hw.gen import generate

    for bad in ("1net", "net-a", "", "a b"):
        with pytest.raises(HardwareError, match="prefix"):
            generate(tiny_export, tmp_path / "rtl", pe=4, simd=16, name=bad)
    assert not (tmp_path / "rtl").exists()


# Icarus in `make test` (with a reset mid-stream); the Verilator build (~20 s) in `make test-slow`
@pytest.mark.parametrize("sim", [pytest.param("verilator", marks=[*SIMS[0].marks, pytest.mark.slow]), SIMS[1]])
def test_axis_network_bit_exact_in_hdl(rtls, sim, tmp_path):
    """The generated AXIS top in the HDL harness: real test images, random tvalid gaps and tready stalls, every
    result word against the golden model, tlast high and tuser low on each, frame_error never set; on Icarus also a
    reset (aresetn) mid-stream."""
    from sim.runner import simulate_network

    export, root = rtls
    s = simulate_network(
        export,
        root / "axis",
        sim=sim,
        n=6,
        work_dir=tmp_path / "sim",
        gap_rate=80,
        stall_rate=80,
        reset_test=sim == "icarus",
        progress=False,
        locate=False,
    )
    assert s["passed"] and s["mismatches"] == 0 and s["images"] == 6, s
    assert s["interface"] == "axis" and s["axis_words"] == 6 and s["axis_flag_errors"] == 0


@pytest.mark.skipif(not have_simulator("icarus"), reason="icarus is not installed")
def test_axis_bench_catches_a_wrong_tlast(rtls, tmp_path):
    """A top.v whose m_axis_tlast is stuck low fails the AXIS bench (the check has teeth)."""
    import shutil

    from sim.runner import simulate_network

    export, root = rtls
    bad = tmp_path / "rtl"
    shutil.copytree(root / "axis", bad)
    text = (bad / "top.v").read_text()
    assert "assign m_axis_tlast = 1'h1;" in text
    (bad / "top.v").write_text(text.replace("assign m_axis_tlast = 1'h1;", "assign m_axis_tlast = 1'h0;"))
    s = simulate_network(export, bad, sim="icarus", n=3, work_dir=tmp_path / "sim", progress=False, locate=False)
    assert not s["passed"] and s["mismatches"] == 0 and s["axis_flag_errors"] == 3
