"""hw.matrix: the shared-partial-sum constant ±1 matrix (plan, amaranth.sim, Icarus, CLI, hard-wired MVU)."""

import json
import shutil
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np
import pytest
from amaranth.sim import Simulator
from conftest import run_yosys

from export.folding import accumulator_bounds, apply_scores, apply_thresholds, signed_bits
from hw.matrix import ConstantMatrix, default_depth, lut_estimate, network, plan_matrix
from hw.mvu import MatrixVectorUnit
from hw.stream_helpers import stream_get_all, stream_put_all


def _weights(n_in, n_out, seed, kind="random"):
    rng = np.random.default_rng(seed)
    w = rng.choice([-1, 1], (n_in, n_out))
    if kind == "special" and n_out >= 4:
        w[:, 0] = 1  # all +1
        w[:, 1] = -1  # all -1: needs a negation
        w[:, 2] = w[:, 3]  # two equal outputs
        if n_out >= 5:
            w[:, 4] = -w[:, 3]  # and one negated
    return w


def _vectors(w, bits, n=40, seed=0):
    """Random vectors, all-zero, all-maximum, and for every output the two that reach its minimum and maximum."""
    xhi = (1 << bits) - 1
    rng = np.random.default_rng(seed)
    x = [rng.integers(0, xhi + 1, (n, w.shape[0])), np.zeros((1, w.shape[0]), int), np.full((1, w.shape[0]), xhi)]
    x += [np.where(w.T > 0, xhi, 0), np.where(w.T > 0, 0, xhi)]
    return np.concatenate(x).astype(np.int64)


def _coefficients(plan):
    """Each node's coefficient vector over the inputs."""
    c = [np.eye(plan.n_in, dtype=np.int64)[i] for i in range(plan.n_in)]
    for a, b, sub in plan.ops:
        ca = np.zeros(plan.n_in, np.int64) if a < 0 else c[a]
        c.append(ca - c[b] if sub else ca + c[b])
    return c


SHAPES = [
    (1, 1, 8, "random"),
    (1, 3, 4, "random"),
    (2, 5, 1, "special"),
    (3, 2, 8, "random"),
    (5, 7, 3, "special"),
    (17, 4, 8, "special"),
    (33, 12, 2, "random"),
    (40, 9, 8, "special"),
    (64, 16, 8, "random"),
    (64, 6, 5, "special"),
    (100, 20, 4, "random"),
]


@pytest.mark.parametrize("n_in, n_out, bits, kind", SHAPES)
def test_plan_is_exact_with_exact_ranges_and_bounded_depth(n_in, n_out, bits, kind):
    w = _weights(n_in, n_out, n_in * 7 + n_out, kind)
    plan = plan_matrix(w, bits)
    x = _vectors(w, bits)
    assert np.array_equal(plan.evaluate(x), x @ w)
    assert plan.depth <= default_depth(n_in) == plan.depth_bound
    xhi = (1 << bits) - 1
    coef = _coefficients(plan)
    for n, c in enumerate(coef):
        assert set(np.unique(c)) <= {-1, 0, 1}  # every input at most once per node
        assert (plan.lo[n], plan.hi[n]) == (int(c[c < 0].sum()) * xhi, int(c[c > 0].sum()) * xhi)
        assert plan.depths[n] <= plan.depth
    for j, n in enumerate(plan.outputs):
        assert np.array_equal(coef[n], w[:, j])
    y = x @ w
    assert [plan.lo[n] for n in plan.outputs] == list(y.min(axis=0))  # the extreme vectors reach every range
    assert [plan.hi[n] for n in plan.outputs] == list(y.max(axis=0))


@pytest.mark.parametrize("n_in, n_out, depth", [(64, 16, 6), (64, 16, 7), (64, 16, 12), (50, 10, 6), (7, 9, 3)])
def test_depth_bound_holds_down_to_a_balanced_tree(n_in, n_out, depth):
    w = _weights(n_in, n_out, depth)
    plan = plan_matrix(w, 4, depth)
    assert plan.depth <= depth
    x = _vectors(w, 4, n=10)
    assert np.array_equal(plan.evaluate(x), x @ w)


def test_bad_arguments():
    w = _weights(8, 3, 0)
    for bad, match in (
        ([1, -1], "2-D"),
        (np.zeros((4, 2)), r"\+1 or -1"),
        (np.full((2, 2), 2), r"\+1 or -1"),
        (np.zeros((0, 3)), "non-empty"),
        (np.array([["a"]]), "numbers"),
    ):
        with pytest.raises(ValueError, match=match):
            plan_matrix(bad, 8)
    for bits in (0, 33, 2.5):
        with pytest.raises(ValueError, match="bits"):
            plan_matrix(w, bits)
    with pytest.raises(ValueError, match="depth"):
        plan_matrix(w, 8, depth=2)  # ceil(log2(8)) = 3
    # an all -1 output over 2**D inputs cannot be negated within D levels
    with pytest.raises(ValueError, match="too small"):
        plan_matrix(-np.ones((8, 2), int), 8, depth=3)
    assert plan_matrix(-np.ones((8, 2), int), 8, depth=4).depth == 4


def test_shares_partial_sums_and_plans_256x64_in_seconds():
    w = _weights(64, 16, 0)
    plan = plan_matrix(w, 8)
    # one plus-tree and one minus-tree per row would be 16 * 63 = 1008 adders
    assert plan.adders < 270 and plan.depth <= 7 and lut_estimate(plan) < 2600
    w = _weights(256, 64, 0)
    t0 = time.perf_counter()
    plan = plan_matrix(w, 8)
    assert time.perf_counter() - t0 < 60
    assert plan.adders < 3000 and plan.depth <= default_depth(256)
    x = _vectors(w, 8, n=5)
    assert np.array_equal(plan.evaluate(x), x @ w)


def _simulate(dut, xs):
    """Drive one vector per cycle (or settle, combinationally) and collect ``y`` ``latency`` cycles later."""
    got = []

    async def bench(ctx):
        if not dut.latency:
            for x in xs:
                ctx.set(dut.x, [int(v) for v in x])
                await ctx.delay(1e-9)
                got.append([ctx.get(dut.y[j]) for j in range(dut.n_out)])
            return
        for t in range(len(xs) + dut.latency):
            if t < len(xs):
                ctx.set(dut.x, [int(v) for v in xs[t]])
            await ctx.tick()
            if t >= dut.latency - 1 and len(got) < len(xs):
                got.append([ctx.get(dut.y[j]) for j in range(dut.n_out)])

    sim = Simulator(dut)
    if dut.latency:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got)


@pytest.mark.parametrize(
    "n_in, n_out, bits, pipeline, kind",
    [
        (1, 2, 8, 0, "random"),
        (5, 7, 3, 0, "special"),
        (40, 9, 8, 0, "special"),
        (64, 16, 8, 0, "random"),
        (40, 9, 8, 1, "special"),
        (23, 6, 4, 2, "random"),
        (64, 16, 8, 3, "random"),
    ],
)
def test_component_matches_x_at_w_in_amaranth_sim(n_in, n_out, bits, pipeline, kind):
    w = _weights(n_in, n_out, n_in + n_out + bits, kind)
    dut = ConstantMatrix(weights=w, in_bits=bits, pipeline=pipeline)
    assert dut.latency == (dut.depth // pipeline if pipeline else 0)
    xs = _vectors(w, bits, n=12, seed=pipeline)
    assert np.array_equal(_simulate(dut, xs), xs @ w)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hw", "matrix", *map(str, args)], capture_output=True, text=True)


ICARUS_TB = """`timescale 1ns/1ps
module tb;
  reg clk = 0;
  reg [{xw}-1:0] vec [0:{n}-1];
  reg [{xw}-1:0] x;
  wire [{yw}-1:0] y;
  integer t, f;
  lutmac_matrix dut({ports});
  initial begin
    $readmemh("x.hex", vec);
    f = $fopen("y.hex", "w");
    for (t = 0; t < {n} + {lat}; t = t + 1) begin
      x = vec[t < {n} ? t : 0];
      #1;
      if ({lat} == 0) $fdisplay(f, "%h", y);
      else begin clk = 1; #1; clk = 0; if (t >= {lat} - 1 && t < {n} + {lat} - 1) $fdisplay(f, "%h", y); end
    end
    $fclose(f);
    $finish;
  end
endmodule
"""


def _icarus_matrix(tmp_path, w, bits, pipeline, target="portable", n=30):
    """Write ``w``'s matrix with the CLI, simulate it in Icarus (with the primitive models on a Xilinx target) on
    :func:`_vectors`; returns ``(inputs, outputs, meta)``."""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    n_in, n_out = w.shape
    np.save(tmp_path / "w.npy", w)
    args = ["--weights", tmp_path / "w.npy", "--bits", bits, "--pipeline", pipeline, "--target", target]
    r = _cli(*args, "-o", tmp_path / "m.v")
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "m.json").read_text())
    wy, lat = meta["out_bits"], meta["latency_cycles"]
    xs = _vectors(w, bits, n=n, seed=bits)
    (tmp_path / "x.hex").write_text("".join(f"{sum(int(v) << (i * bits) for i, v in enumerate(x)):x}\n" for x in xs))
    ports = ".clk(clk), .rst(1'b0), .x(x), .y(y)" if lat else ".x(x), .y(y)"
    (tmp_path / "tb.v").write_text(ICARUS_TB.format(xw=n_in * bits, yw=n_out * wy, n=len(xs), lat=lat, ports=ports))
    models = [meta["simulation_models"]] if meta["simulation_models"] else []
    subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", "m.v", *models], cwd=tmp_path, check=True)
    subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True, capture_output=True)
    words = [int(s, 16) for s in (tmp_path / "y.hex").read_text().split()]
    got = np.array(
        [
            [((v >> (j * wy)) & ((1 << wy) - 1)) - (((v >> (j * wy + wy - 1)) & 1) << wy) for j in range(n_out)]
            for v in words
        ]
    )
    return xs, got, meta


@pytest.mark.parametrize("n_in, n_out, bits, pipeline", [(64, 16, 8, 0), (37, 11, 5, 2)])
def test_cli_verilog_matches_x_at_w_in_icarus(tmp_path, n_in, n_out, bits, pipeline):
    w = _weights(n_in, n_out, n_in, "special")
    xs, got, meta = _icarus_matrix(tmp_path, w, bits, pipeline)
    wy, lat = meta["out_bits"], meta["latency_cycles"]
    assert meta["module"] == "lutmac_matrix" and (meta["n_in"], meta["n_out"], meta["in_bits"]) == (n_in, n_out, bits)
    assert meta["ports"]["x"]["width"] == n_in * bits and meta["ports"]["y"]["width"] == n_out * wy
    assert meta["depth"] <= meta["depth_bound"] == default_depth(n_in)
    assert lat == (meta["depth"] // pipeline if pipeline else 0) and meta["adders"] > 0
    assert meta["target"] == "portable" and meta["simulation_models"] is None
    assert np.array_equal(got, xs @ w)
    # no multiplier anywhere
    run_yosys("read_verilog m.v; proc; tee -o stat.txt stat", tmp_path)
    assert "$mul" not in (tmp_path / "stat.txt").read_text()


# -- ternary adders (hw.ternary) on Xilinx targets --------------------------------------------------------------


def _ternary_cases(count, seed):
    """Random operand lists ``(width, signed, sign)`` (1..3 operands, at most two subtracted) with the exact
    result width: unsigned where the sum cannot go negative."""
    from hw.widths import signed_width

    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        ops = [(int(rng.integers(1, 6)), bool(rng.integers(0, 2)), int(rng.choice([-1, 1]))) for _ in range(3)]
        ops = ops[: int(rng.integers(1, 4))]
        if sum(s < 0 for _, _, s in ops) > 2:
            continue
        span = [((-(1 << (w - 1)), (1 << (w - 1)) - 1) if sg else (0, (1 << w) - 1), s) for w, sg, s in ops]
        lo = sum(min(s * v for v in r) for r, s in span)
        hi = sum(max(s * v for v in r) for r, s in span)
        cases.append((ops, max(1, hi.bit_length()) if lo >= 0 else signed_width(lo, hi)))
    return cases


def _icarus_ternary(tmp_path, cases, family):
    """Every case's adder in one Verilog module, simulated exhaustively in Icarus; returns ``(got, expected)``."""
    import itertools

    from amaranth import hdl
    from amaranth.back import verilog
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from hw.ternary import ternary_add
    from hw.xilinx_models import simulation_models
    from hw.xilinx_tree import CARRY_CELLS

    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    tmp_path.mkdir(parents=True, exist_ok=True)

    def shape(w, sg):
        return hdl.signed(w) if sg else hdl.unsigned(w)

    class Adders(wiring.Component):
        def __init__(self):
            sig = {}
            for c, (ops, n) in enumerate(cases):
                sig |= {f"x{c}_{j}": In(shape(w, sg)) for j, (w, sg, _) in enumerate(ops)}
                sig[f"y{c}"] = Out(n)
            super().__init__(sig)

        def elaborate(self, platform):
            m = Module()
            for c, (ops, n) in enumerate(cases):
                terms = [(getattr(self, f"x{c}_{j}"), sg, s) for j, (_, sg, s) in enumerate(ops)]
                m.d.comb += getattr(self, f"y{c}").eq(ternary_add(m, f"a{c}", family, terms, n))
            return m

    (tmp_path / "dut.v").write_text(verilog.convert(Adders(), name="dut", emit_src=False))
    (tmp_path / "models.v").write_text(simulation_models({"LUT6_2", CARRY_CELLS[family][0]}))
    lines, expected = [], []
    for c, (ops, n) in enumerate(cases):
        spans = [range(-(1 << (w - 1)), 1 << (w - 1)) if sg else range(1 << w) for w, sg, _ in ops]
        for vals in itertools.product(*spans):
            sets = " ".join(f"x{c}_{j} = {v};" for j, v in enumerate(vals))
            lines.append(f'#1 {sets} #1 $display("%0d", y{c});')
            total = sum(s * v for (_, _, s), v in zip(ops, vals))
            expected.append(total % (1 << n))  # y is unsigned n bits: the value modulo 2**n
    decl = "".join(
        f"reg [{w - 1}:0] x{c}_{j};\n" for c, (ops, _) in enumerate(cases) for j, (w, _, _) in enumerate(ops)
    ) + "".join(f"wire [{n - 1}:0] y{c};\n" for c, (_, n) in enumerate(cases))
    ports = ", ".join(
        [f".x{c}_{j}(x{c}_{j})" for c, (ops, _) in enumerate(cases) for j in range(len(ops))]
        + [f".y{c}(y{c})" for c in range(len(cases))]
    )
    tb = "`timescale 1ns/1ps\nmodule tb;\n" + decl + f"dut d({ports});\ninitial begin\n"
    (tmp_path / "tb.v").write_text(tb + "\n".join(lines) + "\n$finish;\nend\nendmodule\n")
    subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", "dut.v", "models.v"], cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    return [int(v) for v in out.split() if v.isdigit()], expected


@pytest.mark.parametrize("family, seed", [("xc7", 0), ("xc7", 1), ("xcu", 2)])
def test_ternary_adder_is_exact_for_every_operand_value_in_icarus(tmp_path, family, seed):
    from hw.ternary import ternary_luts

    cases = _ternary_cases(40, seed)
    got, expected = _icarus_ternary(tmp_path, cases, family)
    assert got == expected
    # one LUT per result bit at most (the sign-extension positions share theirs)
    assert all(ternary_luts(ops, n) <= n for ops, n in cases)


def test_ternary_check_catches_broken_carry_handling(tmp_path, monkeypatch):
    """The exhaustive check above fails when the carry-save carry is dropped or wrong, or when the chain's carry-in
    (a subtraction's ``+1``) is lost: it sees the carry handling."""
    import hw.ternary as ternary

    cases = [([(3, False, 1), (3, True, -1), (2, False, -1)], 5), ([(4, False, 1), (4, False, 1), (3, True, 1)], 6)]
    good, expected = _icarus_ternary(tmp_path / "good", cases, "xc7")
    assert good == expected
    breaks = {
        "no carry-save carry": lambda lits: ("c", 0),
        "majority as xor": lambda lits: ternary._xor(lits) if ternary._xor(lits)[0] != "f" else ("c", 0),
    }
    for k, (why, maj) in enumerate(breaks.items()):
        with monkeypatch.context() as mp:
            mp.setattr(ternary, "_maj", maj)
            got, expected = _icarus_ternary(tmp_path / f"b{k}", cases, "xc7")
        assert got != expected, why
    init = ternary.TernaryLayout.__init__

    def no_cin(self, operands, n):
        init(self, operands, n)
        self.cin = 0

    with monkeypatch.context() as mp:
        mp.setattr(ternary.TernaryLayout, "__init__", no_cin)
        got, expected = _icarus_ternary(tmp_path / "cin", cases, "xc7")
    assert got != expected


def _network_eval(net, x):
    plan = net.plan
    v = {i: x[:, i] for i in range(plan.n_in)}
    for n, terms in net.nodes:
        v[n] = sum(g * v[t] for t, g in terms)
    return np.stack([v[n] for n in plan.outputs], axis=1)


@pytest.mark.parametrize("n_in, n_out, bits, kind", SHAPES)
def test_fused_network_is_exact_and_no_deeper(n_in, n_out, bits, kind):
    w = _weights(n_in, n_out, n_in * 7 + n_out, kind)
    plan = plan_matrix(w, bits)
    portable = network(plan)
    assert portable.adders == plan.adders and portable.depth == plan.depth and portable.ternary == 0
    assert portable.luts() == lut_estimate(plan)
    net = network(plan, "xc7")
    x = _vectors(w, bits)
    assert np.array_equal(_network_eval(net, x), x @ w)
    assert net.depth <= plan.depth and (net.adders < plan.adders * 0.8 or n_in < 17)
    # every shared node and output of the plan is still there, with its range; new partial sums are exact
    kept = {n for n, _ in net.nodes}
    assert all(n in kept or n < n_in for n in plan.outputs)
    coef = {i: np.eye(n_in, dtype=np.int64)[i] for i in range(n_in)}
    xhi = (1 << bits) - 1
    for n, terms in net.nodes:
        coef[n] = sum(g * coef[t] for t, g in terms)
        assert (net.lo[n], net.hi[n]) == (int(coef[n][coef[n] < 0].sum()) * xhi, int(coef[n][coef[n] > 0].sum()) * xhi)
        assert net.depths[n] == 1 + max(net.depths[t] for t, _ in terms)
    assert all(1 <= len(t) <= 3 and sum(g < 0 for _, g in t) <= 2 for _, t in net.nodes)
    assert lut_estimate(plan, "xc7") == net.luts() <= lut_estimate(plan)
    readers = defaultdict(int)
    for _, terms in net.nodes:
        for t, _ in terms:
            readers[t] += 1
    emitted = {n for n, _ in net.nodes}
    assert all(readers[n] + plan.outputs.count(n) >= 1 for n in emitted)  # nothing emitted that nobody reads


@pytest.mark.parametrize(
    "n_in, n_out, bits, pipeline, target, kind",
    [
        (1, 2, 1, 0, "xc7", "random"),
        (5, 7, 3, 0, "xc7", "special"),
        (17, 4, 8, 0, "xc7", "special"),
        (33, 12, 2, 0, "xcu", "random"),
        (40, 9, 6, 0, "xc7", "special"),
        pytest.param(64, 16, 8, 0, "xc7", "random", marks=pytest.mark.slow),  # the case, 30 s of Icarus
        (64, 6, 7, 0, "xcup", "special"),
        (23, 6, 4, 2, "xc7", "random"),
        (37, 11, 5, 1, "xcu", "special"),
    ],
)
def test_ternary_matrix_matches_x_at_w_in_icarus(tmp_path, n_in, n_out, bits, pipeline, target, kind):
    w = _weights(n_in, n_out, n_in + bits, kind)
    xs, got, meta = _icarus_matrix(tmp_path, w, bits, pipeline, target)
    assert np.array_equal(got, xs @ w)
    plan = plan_matrix(w, bits, target=target)
    net = network(plan, target)
    assert meta["target"] == target and meta["depth"] == net.depth and meta["adders"] == net.adders
    assert meta["latency_cycles"] == (net.depth // pipeline if pipeline else 0)
    if net.ternary:
        assert meta["simulation_models"] == "m_sim_models.v" and meta["ternary_adders"] == net.ternary
        assert "LUT6_2" in (tmp_path / "m.v").read_text()


def test_cli_refuses_bad_input_with_one_line_and_writes_nothing(tmp_path):
    good = _weights(8, 3, 0)
    files = {"pm2": np.full((4, 3), 2), "flat": np.ones(5), "cube": np.ones((2, 2, 2)), "good": good}
    for name, arr in files.items():
        np.save(tmp_path / f"{name}.npy", arr)
    (tmp_path / "junk.npy").write_text("not an array")
    cases = [
        ("pm2.npy", 8, [], r"\+1 or -1"),
        ("flat.npy", 8, [], "2-D"),
        ("cube.npy", 8, [], "2-D"),
        ("good.npy", 0, [], "--bits"),
        ("good.npy", 33, [], "--bits"),
        ("missing.npy", 8, [], "no such file"),
        ("junk.npy", 8, [], "cannot read"),
        ("good.npy", 8, ["--depth", "2"], "depth"),
        ("good.npy", 8, ["--pipeline", "-1"], "--pipeline"),
    ]
    for k, (wfile, bits, extra, match) in enumerate(cases):
        out = tmp_path / f"out{k}" / "m.v"
        r = _cli("--weights", tmp_path / wfile, "--bits", bits, *extra, "-o", out)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("hw: error:"), (wfile, r.stderr)
        assert __import__("re").search(match, lines[0]), (match, lines[0])
        assert not out.parent.exists() or not any(out.parent.iterdir())


def _hardwired_layer(n_in, n_out, bits, abits, pipeline, seed, vectors=5, in_lanes=4):
    rng = np.random.default_rng(seed)
    weights = rng.choice(np.array([-1, 1], np.int8), (n_out, n_in))
    lo, hi = accumulator_bounds(n_in, 2**bits - 1)
    x = rng.integers(0, 2**bits, (vectors, n_in))
    x[0] = 2**bits - 1
    acc = x @ weights.T.astype(np.int64)
    common = dict(
        weights=weights,
        in_bits=bits,
        in_lanes=in_lanes,
        pe=n_out,
        simd=n_in,
        acc_width=signed_bits(lo, hi),
        tree_pipeline=pipeline,
        hardwired=True,
    )
    if abits:
        thr = np.sort(rng.integers(lo // 4, hi // 4 + 1, (n_out, 2**abits - 1)), axis=1)
        orient = rng.choice([-1, 1], n_out)
        return MatrixVectorUnit(**common, thresholds=(orient, thr)), x, apply_thresholds(acc, orient, thr)
    scale, offset = rng.integers(-2047, 2048, n_out), rng.integers(-(10**5), 10**5, n_out)
    bound = 2047 * hi + 10**5
    unit = MatrixVectorUnit(**common, scores=(scale, offset, signed_bits(-bound, bound)))
    return unit, x, apply_scores(acc, scale, offset)


@pytest.mark.parametrize(
    "n_in, n_out, bits, abits, pipeline", [(24, 10, 8, None, 0), (30, 12, 4, 2, 2), (64, 16, 8, 4, 3)]
)
def test_hardwired_mvu_uses_one_shared_matrix(n_in, n_out, bits, abits, pipeline):
    dut, x, expected = _hardwired_layer(n_in, n_out, bits, abits, pipeline, seed=n_in)
    plan = dut._matrix_plan
    assert (dut.sf, dut.nf, dut.cycles) == (1, 1, 1)
    assert dut.tree_latency == ConstantMatrix.latency_for(plan.depth, pipeline)
    assert plan.adders < n_out * (n_in - 1)
    rng = np.random.default_rng(1)
    got = []

    beats = np.zeros((len(x), dut.in_beats * 4), np.int64)
    beats[:, :n_in] = x

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, [[int(v) for v in b] for b in beats.reshape(-1, 4)], rng=rng, gap=0.3)

    async def consumer(ctx):
        got.extend(await stream_get_all(ctx, dut.o, len(x), rng=rng, stall=0.3))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert np.array_equal(np.array([[o[p] for p in range(n_out)] for o in got]), expected)


@pytest.mark.parametrize(
    "hardwired", [("fc3",), pytest.param(("fc1", "fc3"), marks=pytest.mark.slow)], ids=["fc3", "fc1+fc3"]
)
def test_gen_xc7_hardwired_layer_uses_ternary_matrix_bit_exact_in_icarus(digits_export, tmp_path, hardwired):
    """`hw gen --target xc7 --hardwired fc3`: the hard-wired layer's matrix is built of ternary adders (its
    primitives' models in sim_models.v) and the network stays bit-exact against the golden model. (With fc1's
    64 x 64 matrix too, Icarus takes minutes on the primitives' models: `make test-slow`.)"""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    from hw.gen import generate

    rtl = tmp_path / "rtl"
    desc = generate(digits_export[1], rtl, pe=4, simd=16, target="xc7", hardwired=hardwired, tree_pipeline=2)
    text = (rtl / "top.v").read_text()
    assert desc["simulation_models"] and "module LUT6_2" in (rtl / desc["simulation_models"]).read_text()
    assert __import__("re").search(r"\bt\d+_lut\d+\b", text)  # the matrices' ternary adders' LUT6_2 instances
    args = ["--export", digits_export[1], "--rtl", rtl, "--sim", "icarus", "--n", "4", "-o", tmp_path / "sim"]
    r = subprocess.run([sys.executable, "-m", "sim", *map(str, args), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path / "sim" / "results.json").read_text())
    assert res["mismatches"] == 0 and res["images"] == 4
