"""Progression thresholds (docs/folding.md): the level ``#{k : s*acc*2^F >= A_fx + k*D_fx}``, its expansion to a
table, the exporter's exact fit and choice, the manifest's checks, and the ProgressionRequantizer (amaranth.sim and
a whole network on Verilator, bit-exact against the golden model)."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from conftest import have_simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from export import ExportError
from export.folding import (
    FRAC_BITS_MAX,
    accumulator_bounds,
    apply_progression,
    apply_thresholds,
    expand_progression,
    fit_progression,
    fold_thresholds,
    progression_bounds,
    progression_terms,
    threshold_storage_bits,
)
from export.packing import decode_progression, encode_progression

# -- the definition and its expansion ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), abits=st.integers(1, 8), frac_bits=st.integers(0, 12), span=st.integers(1, 300))
def test_progression_level_equals_expanded_table(seed, abits, frac_bits, span):
    rng = np.random.default_rng(seed)
    lo, hi = -span, span
    levels, rows = 2**abits - 1, 6
    a_lo, a_hi, d_lo, d_hi = progression_bounds(lo, hi, levels, frac_bits)
    d = rng.integers(d_lo, min(d_hi, 4 * (span << frac_bits) // levels + 2) + 1, rows)
    a = rng.integers(max(a_lo, (lo - 2) << frac_bits) - levels * d, (hi + 2) << frac_bits)
    a = np.clip(a, a_lo, a_hi)
    orient = rng.choice([-1, 1], rows)
    acc = np.broadcast_to(np.arange(lo, hi + 1)[:, None], (2 * span + 1, rows))
    table = expand_progression(a, d, frac_bits, levels, lo, hi)
    assert table.min() >= lo and table.max() <= hi + 1 and np.all(np.diff(table, axis=1) >= 0)
    assert np.array_equal(apply_thresholds(acc, orient, table), apply_progression(acc, orient, a, d, frac_bits, levels))


def _bn(rng, rows, acc_scale):
    return dict(
        mean=rng.normal(0, acc_scale / 4, rows),
        var=rng.uniform(0.1, 2, rows) * acc_scale**2 / 16,
        gamma=rng.normal(0, 1, rows),
        beta=rng.normal(0, 1, rows),
        bias=np.zeros(rows),
        eps=1e-4,
    )


@pytest.mark.parametrize("abits, seed", [(3, 0), (4, 1), (8, 2), (8, 3)])
def test_fit_reproduces_the_exact_table(abits, seed):
    """Random batch norms, with a gamma == 0 row, a row clipped below, one above, one constant mid-level and
    negative gammas: the fit's levels equal the exact table's on every accumulator value, at the smallest F."""
    rng = np.random.default_rng(seed)
    rows = 40
    lo, hi = accumulator_bounds(64, 15)
    bn = _bn(rng, rows, hi)
    bn["gamma"][0] = 0.0  # constant level (beta's)
    bn["beta"][1], bn["gamma"][1] = 50.0, 1.0  # every threshold below acc_min: level L
    bn["beta"][2], bn["gamma"][2] = -50.0, 1.0  # every threshold above acc_max: level 0
    bn["gamma"][3], bn["beta"][3] = 0.0, 2.0  # gamma == 0, a level strictly inside 0..L
    kw = dict(abits=abits, act_range=4)
    orient, table = fold_thresholds(**bn, **kw, acc_min=lo, acc_max=hi)
    a_est, d_est = progression_terms(**bn, **kw)
    fit = fit_progression(table, a_est, d_est, acc_min=lo, acc_max=hi)
    assert fit is not None
    f, a_fx, d_fx = fit
    assert np.all(d_fx >= 1)
    acc = np.broadcast_to(np.arange(lo, hi + 1)[:, None], (hi - lo + 1, rows))
    levels = 2**abits - 1
    assert np.array_equal(apply_progression(acc, orient, a_fx, d_fx, f, levels), apply_thresholds(acc, orient, table))
    assert 0 < apply_progression(acc[:1], orient, a_fx, d_fx, f, levels)[0, 3] < levels  # mid-level constant kept
    a_lo, a_hi, d_lo, d_hi = progression_bounds(lo, hi, levels, f)
    assert a_fx.min() >= a_lo and a_fx.max() <= a_hi and d_fx.max() <= d_hi
    if f > 0:  # the smallest F: one fewer fractional bit does not fit
        assert fit_progression(table, a_est, d_est, acc_min=lo, acc_max=hi, max_frac_bits=f - 1) is None


def test_fit_refuses_a_table_that_is_no_progression():
    lo, hi = -100, 100
    table = np.array([[-50, -49, 60]])  # steps 1 and 109: no common step fits exactly
    assert fit_progression(table, np.array([-60.0]), np.array([10.0]), acc_min=lo, acc_max=hi) is None


def test_progression_file_round_trip_and_refusals():
    data = encode_progression([1, -1], [-3, 7], [6, 1], 2, 3)
    orient, a, d, f, levels = decode_progression(data, "x.thresholds")
    assert orient.tolist() == [1, -1] and a.tolist() == [-3, 7] and d.tolist() == [6, 1] and (f, levels) == (2, 3)
    assert len(data) == 20 + 17 * 2
    # the worked example of docs/weight-format.md
    assert expand_progression([-3], [6], 2, 3, -100, 100).tolist() == [[1, 3, 4]]
    with pytest.raises(ExportError, match="x.thresholds: D_fx of row 0 is 0"):
        decode_progression(encode_progression([1], [0], [0], 2, 3), "x.thresholds")
    with pytest.raises(ExportError, match="bytes"):
        decode_progression(data[:-1], "x.thresholds")


# -- a real export --------------------------------------------------------------------------------------------------


def test_digits_export_chooses_progression(digits_export, tmp_path):
    """tfc A8 (auto): every hidden layer a progression, exact: its levels equal a table export's everywhere, the
    golden accuracy equals the float model's, and the thresholds take >= 10x fewer bits."""
    from export.exporter import export_checkpoint
    from export.golden import GoldenModel

    ckpt, prog_dir = digits_export
    m = json.loads((prog_dir / "manifest.json").read_text())
    hidden = [e for e in m["layers"] if e["abits"] is not None]
    assert hidden and all(e["activation"]["kind"] == "progression" for e in hidden)
    assert all(8 <= e["activation"]["frac_bits"] <= FRAC_BITS_MAX for e in hidden)
    assert abs(m["golden_test_accuracy"] - m["float_test_accuracy"]) <= 0.0005
    table_dir = tmp_path / "table"
    export_checkpoint(ckpt, table_dir, thresholds="table")
    mt = json.loads((table_dir / "manifest.json").read_text())
    assert all(e["activation"]["kind"] == "thresholds" for e in mt["layers"] if e["abits"] is not None)
    assert mt["golden_test_accuracy"] == m["golden_test_accuracy"]
    gp, gt = GoldenModel(prog_dir), GoldenModel(table_dir)
    table_bits = prog_bits = 0
    for p, t in zip(gp.layers, gt.layers):
        if p.thresholds is None:
            continue
        assert np.array_equal(p.thresholds, t.thresholds) and np.array_equal(p.orientation, t.orientation)
        acc = np.broadcast_to(np.arange(p.acc_min, p.acc_max + 1)[:, None], (p.acc_max - p.acc_min + 1, p.rows))
        f, a_fx, d_fx = p.progression
        assert np.array_equal(
            apply_progression(acc, p.orientation, a_fx, d_fx, f, 255),
            apply_thresholds(acc, t.orientation, t.thresholds),
        )
        kw = dict(rows=p.rows, levels=255, acc_min=p.acc_min, acc_max=p.acc_max)
        table_bits += threshold_storage_bits("table", **kw)
        prog_bits += threshold_storage_bits("progression", **kw, frac_bits=f)
    assert table_bits >= 10 * prog_bits


def test_auto_takes_progressions_only_where_they_store_fewer_bits(digits_export_a2, tmp_path):
    """At A2 (3 levels) auto stores a progression only where its constants take fewer bits than the table; forcing
    tables keeps the same levels (golden accuracy)."""
    from export.exporter import export_checkpoint

    m = json.loads((digits_export_a2[1] / "manifest.json").read_text())
    for e in m["layers"][:-1]:
        act = e["activation"]
        kw = dict(rows=e["out_features"], levels=3, acc_min=e["acc_min"], acc_max=e["acc_max"])
        if act["kind"] == "progression":
            assert threshold_storage_bits("progression", **kw, frac_bits=act["frac_bits"]) < threshold_storage_bits(
                "table", **kw
            )
    mt = export_checkpoint(digits_export_a2[0], tmp_path / "t", thresholds="table")
    assert mt["golden_test_accuracy"] == m["golden_test_accuracy"]


# -- manifest lies --------------------------------------------------------------------------------------------------


def _copy(digits_export, tmp_path):
    d = tmp_path / "export"
    shutil.copytree(digits_export[1], d)
    return d, json.loads((d / "manifest.json").read_text())


def _rewrite_file(d, m, layer, data):
    (d / f"{layer}.thresholds").write_bytes(data)
    e = next(e for e in m["layers"] if e["name"] == layer)
    e["activation"]["sha256"] = hashlib.sha256(data).hexdigest()


def _lie_fields(key, value):
    def lie(d, m):
        m["layers"][0]["activation"][key] = value

    return lie


def _lie_frac_consistent(d, m):
    """frac_bits and the widths it implies all changed consistently: the file's own F disagrees."""
    from export.folding import progression_widths

    e = m["layers"][0]
    act = e["activation"]
    act["frac_bits"] += 1
    act["a_bits"], act["d_bits"] = progression_widths(e["acc_min"], e["acc_max"], act["levels"], act["frac_bits"])


def _file_edit(edit):
    def lie(d, m):
        o, a, dd, f, levels = decode_progression((d / "fc0.thresholds").read_bytes())
        o, a, dd = edit(o.copy(), a.copy(), dd.copy(), m["layers"][0])
        _rewrite_file(d, m, "fc0", encode_progression(o, a, dd, f, levels))

    return lie


def _zero_d(o, a, d, e):
    d[3] = 0
    return o, a, d


def _huge_a(o, a, d, e):
    a[2] = (e["acc_max"] + 2) << e["activation"]["frac_bits"]
    return o, a, d


def _flip_orientation(o, a, d, e):
    o[0] = -o[0]
    return o, a, d


@pytest.mark.parametrize(
    "lie, match",
    [
        (_lie_fields("frac_bits", 99), r"layer 'fc0' activation: frac_bits 99 is outside 0\.\.20"),
        (_lie_fields("frac_bits", 13.0), "frac_bits must be an integer"),
        (_lie_fields("a_bits", 7), r"layer 'fc0' activation: a_bits is 7, acc range"),
        (_lie_fields("d_bits", 64), r"layer 'fc0' activation: d_bits is 64, acc range"),
        (_lie_fields("kind", "affine"), "activation kind must be 'thresholds' or 'progression'"),
        (lambda d, m: m["layers"][0]["activation"].pop("frac_bits"), "missing key 'frac_bits'"),
        (_lie_frac_consistent, r"fc0' activation frac_bits is \d+, .*fc0.thresholds has \d+"),
        (_file_edit(_zero_d), r"fc0.thresholds: D_fx of row 3 is 0"),
        (_file_edit(_huge_a), r"fc0.thresholds: layer 'fc0': A_fx of row 2 is \d+, outside"),
        (_file_edit(_flip_orientation), "negative_orientation"),
        (lambda d, m: m["layers"][0]["activation"].update(kind="thresholds"), "bad magic"),
    ],
)
def test_manifest_lies_about_progressions_are_refused(digits_export, tmp_path, lie, match):
    from export.golden import GoldenModel

    d, m = _copy(digits_export, tmp_path)
    lie(d, m)
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportError, match=match) as info:
        GoldenModel(d)
    assert "\n" not in str(info.value)


# -- hardware -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("abits, neurons, lanes, frac_bits", [(3, 5, 2, 0), (4, 7, 3, 5), (8, 16, 4, 14), (8, 3, 3, 9)])
def test_progression_requantizer_matches_golden(abits, neurons, lanes, frac_bits):
    from test_hw_units import _requantize_folds

    from hw.requant import ProgressionRequantizer

    rng = np.random.default_rng(abits * 100 + neurons)
    levels, acc_width = 2**abits - 1, 11
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    d = rng.integers(1, max(2, (hi - lo) << frac_bits) // levels, neurons)
    a = rng.integers(lo << frac_bits, hi << frac_bits, neurons) - levels * d // 2
    orient = rng.choice([-1, 1], neurons)
    dut = ProgressionRequantizer(
        orientation=orient, a_fx=a, d_fx=d, frac_bits=frac_bits, levels=levels, lanes=lanes, acc_width=acc_width
    )
    assert dut.latency == sum(dut.steps) + 5 and dut.steps == (1,) * abits  # a pipeline
    accs = rng.integers(lo, hi + 1, (30, dut.folds * lanes))
    accs[0], accs[1] = lo, hi  # both clamps, both orientations
    t = expand_progression(a, d, frac_bits, levels, lo, hi)  # at and just below each row's thresholds
    accs[2, :neurons] = orient * t[:, levels // 2]
    accs[3, :neurons] = orient * np.maximum(t[:, levels // 2] - 1, lo + 1)
    expected = apply_progression(accs[:, :neurons], orient, a, d, frac_bits, levels)
    assert len(np.unique(expected)) > 2
    got = _requantize_folds(dut, accs, lanes, dut.result, dut.result_valid)
    assert np.array_equal(got[:, :neurons], expected)


@pytest.mark.parametrize("interval", [1, 4, 9])
def test_constant_rows_keep_their_levels_in_narrow_subtractors(interval):
    """The export's canonical constants for rows of one level (c = 0, L and between: ``D = span * 2^F``) and a real
    progression whose thresholds all lie outside the accumulator range become zero-flagged constants; every level
    over the range is the golden one, and the search is as narrow as the real progressions alone make it."""
    from test_hw_units import _requantize_folds

    from hw.requant import ProgressionRequantizer

    abits, frac_bits, acc_width, lanes = 4, 6, 11, 3
    levels, lo, hi = 2**abits - 1, -700, 650  # a layer's reachable range inside 11 bits
    span = hi - lo + 1
    rng = np.random.default_rng(interval)
    d = list(rng.integers(40 << frac_bits, 90 << frac_bits, 4))
    a = [int(v) for v in rng.integers(lo << frac_bits, 0, 4)]
    orient = [1, -1, 1, -1]
    for c in (0, levels, 5, 11):  # canonical constants, as export.folding.fit_progression writes them
        dc = 1 if c in (0, levels) else span << frac_bits
        ac = hi << frac_bits if c == 0 else (lo << frac_bits) - levels if c == levels else (lo << frac_bits) - c * dc
        d.append(dc)
        a.append(ac)
        orient.append(1)  # the canonical constants are for s * acc = acc
    d.append(1 << frac_bits)  # thresholds A + k * D all above hi: level 0 throughout, a real row that is constant
    a.append((hi + 1) << frac_bits)
    orient.append(1)
    kw = dict(orientation=np.array(orient), a_fx=np.array(a), d_fx=np.array(d), frac_bits=frac_bits, levels=levels)
    dut = ProgressionRequantizer(**kw, lanes=lanes, acc_width=acc_width, acc_range=(lo, hi), interval=interval)
    full = ProgressionRequantizer(**kw, lanes=lanes, acc_width=acc_width)
    assert dut.constant_rows == 5 and dut.b_width < full.b_width and dut.r_width < full.r_width
    accs = rng.integers(lo, hi + 1, (24, dut.folds * lanes))
    accs[0], accs[1] = lo, hi
    expected = apply_progression(accs[:, : len(orient)], np.array(orient), np.array(a), np.array(d), frac_bits, levels)
    assert set(expected[:, 4:9].ravel()) == {0, levels, 5, 11}
    if interval == 1:
        got = _requantize_folds(dut, accs, lanes, dut.result, dut.result_valid)
    else:
        got = _spaced_requantize(dut, accs, lanes, interval)
    assert np.array_equal(got[:, : len(orient)], expected)


@pytest.mark.parametrize(
    "abits, interval, steps",
    [(8, 9, (8,)), (8, 5, (4, 4)), (8, 4, (3, 3, 2)), (8, 3, (2, 2, 2, 2)), (8, 12, (8,)), (3, 4, (3,)),
     (4, 3, (2, 2)), (5, 3, (2, 2, 1)), (4, 2, (1, 1, 1, 1)), (8, 1, (1,) * 8), (8, 6, (4, 4)), (7, 3, (2, 2, 2, 1)),
     (3, 2, (1, 1, 1)), (5, 7, (5,))],
)  # fmt: skip
def test_staged_progression_search_matches_golden(abits, interval, steps):
    """Inputs ``interval`` or more cycles apart (a row fold of SF steps): stages of ``interval - 1`` steps, one
    subtractor each, give the pipeline's results. Behind the bounds cycle every stage is only ``D``'s width wide;
    levels 0 and ``L`` from far outside the progression must still come out clamped."""

    from hw.requant import ProgressionRequantizer

    rng = np.random.default_rng(abits * 10 + interval)
    neurons, lanes, frac_bits, acc_width = 7, 3, 6, 11
    levels = 2**abits - 1
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    d = rng.integers(1, max(2, (hi - lo) << frac_bits) // (4 * levels), neurons)  # progressions inside the range
    a = rng.integers(lo << frac_bits, hi << frac_bits, neurons) - levels * d // 2
    orient = rng.choice([-1, 1], neurons)
    kw = dict(orientation=orient, a_fx=a, d_fx=d, frac_bits=frac_bits, levels=levels, lanes=lanes)
    dut = ProgressionRequantizer(**kw, acc_width=acc_width, interval=interval)
    handoffs = sum(m > 1 for m in steps[:-1])  # a stage of several steps hands on from its register
    assert dut.steps == steps and dut.latency == sum(steps) + 5 + handoffs
    assert dut.d_width + abits < dut.r_width  # the stages are narrower than r
    accs = rng.integers(lo, hi + 1, (20, dut.folds * lanes))
    accs[0], accs[1] = lo, hi
    expected = apply_progression(accs[:, :neurons], orient, a, d, frac_bits, levels)
    assert len(np.unique(expected)) > 2 and {0, levels} <= set(expected.ravel())
    got = _spaced_requantize(dut, accs, lanes, interval, rng)
    assert np.array_equal(got[:, :neurons], expected)


@pytest.mark.parametrize("interval", [1, 2, 9])
def test_search_with_r_below_the_first_step(interval):
    """A tiny layer (3-bit accumulators, F = 1, A7): ``r`` is narrower than the first step's bit and never reaches
    ``D << abits``, every level comes from the clamps; the stages still build and match the golden function over
    the whole range."""
    from hw.requant import ProgressionRequantizer

    kw = dict(orientation=np.array([-1, 1]), a_fx=np.array([-50, 3]), d_fx=np.array([1, 2]), frac_bits=1, levels=127)
    dut = ProgressionRequantizer(**kw, lanes=2, acc_width=3, acc_range=(-4, 3), interval=interval)
    accs = np.array([[v, v] for v in range(-4, 4)])
    expected = apply_progression(accs, kw["orientation"], kw["a_fx"], kw["d_fx"], 1, 127)
    assert np.array_equal(_spaced_requantize(dut, accs, 2, interval), expected)


def test_search_plan_stages_follow_the_row_fold():
    """A layer's real widths (F = 14 on 17-bit accumulators, D about 2^18): the stages share the eight steps out
    by SF, each ``D``'s width plus two bits however wide ``r`` is, and fewer stages cost fewer LUTs."""
    from hw.requant import ProgressionRequantizer

    rng = np.random.default_rng(3)
    n, levels, frac_bits, lo, hi = 16, 255, 14, -65280, 65280
    d = rng.integers(135_000, 380_000, n)
    a = rng.integers(-40_000 << frac_bits, 40_000 << frac_bits, n) - levels * d // 2
    kw = dict(orientation=rng.choice([-1, 1], n), a_fx=a, d_fx=d, frac_bits=frac_bits, levels=levels)
    plan = {
        sf: ProgressionRequantizer.plan(**kw, acc_width=18, acc_range=(lo, hi), interval=sf) for sf in (1, 4, 5, 13)
    }
    assert [plan[sf].steps for sf in (1, 4, 5, 13)] == [(1,) * 8, (3, 3, 2), (4, 4), (8,)]
    assert [plan[sf].latency for sf in (1, 4, 5, 13)] == [13, 15, 14, 13]
    assert plan[1].d_width == 19 and plan[1].r_width == 32
    assert plan[1].luts_per_lane > plan[4].luts_per_lane > plan[5].luts_per_lane > plan[13].luts_per_lane
    with pytest.raises(ValueError, match="interval must be a positive integer, not 0"):
        ProgressionRequantizer.plan(**kw, acc_width=18, interval=0)


def _spaced_requantize(dut, accs, lanes, interval, rng=None):
    """Feed a requantiser every row of ``accs`` fold by fold, ``interval`` or (at random) one more cycles apart."""
    from amaranth.sim import Simulator

    rng = rng or np.random.default_rng(0)
    seq = [(i, f) for i in range(len(accs)) for f in range(dut.folds)]
    got = []

    async def bench(ctx):
        for _ in range(len(seq) * (interval + 2) + dut.latency + 2):
            await ctx.delay(1e-9)
            if ctx.get(dut.result_valid):
                got.append([ctx.get(dut.result[p]) for p in range(lanes)])
            await ctx.tick()

    async def feed(ctx):
        for i, f in seq:
            for p in range(lanes):
                ctx.set(dut.acc[p], int(accs[i, f * lanes + p]))
            ctx.set(dut.fold, f)
            ctx.set(dut.valid, 1)
            await ctx.tick()
            ctx.set(dut.valid, 0)
            gap = interval - 1 + int(rng.integers(0, 2))  # at least interval apart
            if gap:
                await ctx.tick().repeat(gap)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got).reshape(len(accs), dut.folds * lanes)


def test_generator_picks_the_unit_by_representation(digits_export, digits_export_a2):
    from export.manifest import load_layers
    from hw.layers import requant_kind
    from hw.mvu import MatrixVectorUnit
    from hw.requant import ProgressionRequantizer, ThresholdRequantizer

    prog = load_layers(digits_export[1])
    assert [requant_kind(p) for p in prog] == ["progression"] * 3 + [None]
    table = load_layers(digits_export_a2[1])
    assert all(requant_kind(p) == "thresholds" for p in table[:-1])
    p = prog[0]
    f, a_fx, d_fx = p.progression
    mvu = MatrixVectorUnit(
        weights=p.weights,
        in_bits=p.in_bits,
        in_lanes=16,
        pe=4,
        simd=16,
        acc_width=p.acc_bits,
        progression=(p.orientation, a_fx, d_fx, f, 255, (p.acc_min, p.acc_max)),
    )
    assert isinstance(mvu._make_requant(), ProgressionRequantizer)
    mvu_t = MatrixVectorUnit(
        weights=p.weights,
        in_bits=p.in_bits,
        in_lanes=16,
        pe=4,
        simd=16,
        acc_width=p.acc_bits,
        thresholds=(p.orientation, p.thresholds),
    )
    assert isinstance(mvu_t._make_requant(), ThresholdRequantizer)
    assert mvu.latency < mvu_t.latency
    for obj in (mvu, mvu_t):
        obj._MustUse__silence = True


@pytest.fixture(scope="module")
def tiny_a3_progression(tmp_path_factory):
    """64-16-10 with 3-bit activations on digits, exported as progressions."""
    from export.exporter import export_checkpoint
    from train.trainer import TrainConfig, run_training

    root = tmp_path_factory.mktemp("digits-a3")
    run_training(TrainConfig(dataset="digits", arch="64-16-10", abits=3, epochs=8), root / "train", progress=False)
    export_checkpoint(root / "train" / "model.pt", root / "export", thresholds="progression")
    return root / "export"


@pytest.mark.skipif(not have_simulator("verilator"), reason="verilator is not installed (make setup installs it)")
def test_progression_network_bit_exact_on_verilator(tiny_a3_progression, tmp_path):
    from hw.gen import generate
    from sim.runner import simulate_network

    m = json.loads((tiny_a3_progression / "manifest.json").read_text())
    assert m["layers"][0]["activation"]["kind"] == "progression"
    # SIMD 24: fc0's sums come SF = 3 cycles apart, a search in stages of 2 and 1 steps; fc1 (SF 1) is the pipeline
    desc = generate(tiny_a3_progression, tmp_path / "rtl", pe=4, simd=24)
    fc0 = desc["layers"][0]
    assert fc0["requant"] == "progression" and fc0["search_steps"] == [2, 1]
    s = simulate_network(
        tiny_a3_progression, tmp_path / "rtl", sim="verilator", n=30, work_dir=tmp_path / "sim", progress=False
    )
    assert s["passed"] and s["mismatches"] == 0 and s["images"] == 30


def test_no_exact_progression_refused_or_kept_as_table(digits_export, tmp_path, monkeypatch):
    """Where no F fits exactly: --thresholds progression refuses the layer (one line naming it), auto keeps tables."""
    import export.exporter as exporter

    monkeypatch.setattr(exporter, "fit_progression", lambda *a, **k: None)
    with pytest.raises(ExportError, match=r"^layer 'fc0': no progression .* --thresholds table or auto$"):
        exporter.export_checkpoint(digits_export[0], tmp_path / "p", thresholds="progression")
    m = exporter.export_checkpoint(digits_export[0], tmp_path / "a")
    assert all(e["activation"]["kind"] == "thresholds" for e in m["layers"][:-1])
    with pytest.raises(ExportError, match="thresholds 'tables'"):
        exporter.export_checkpoint(digits_export[0], tmp_path / "x", thresholds="tables")


def test_cli_thresholds_option(digits_export, tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "--checkpoint",
            str(digits_export[0]),
            "-o",
            str(tmp_path / "t"),
            "--thresholds",
            "table",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "thresholds: fc0 table" in r.stdout and "(1.0x)" in r.stdout
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert [e["activation"]["kind"] for e in m["layers"]] == ["thresholds"] * 3 + ["scores"]
