"""hw components in amaranth.sim against the golden arithmetic: PE trees, requantisers, matrix-vector units."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from export.folding import apply_thresholds
from hw.adder_tree import SignFlipAdderTree
from hw.mvu import MatrixVectorUnit
from hw.requant import ScoreRequantizer, ThresholdRequantizer, csd_digits
from hw.stream_helpers import stream_get_all, stream_put_all
from hw.test_vectors import random_layer


def _run(dut, *benches, clock=True, cycles=20_000):
    """Run ``benches`` to their end; with a clock, a unit that stops producing fails after ``cycles`` instead of
    hanging the suite."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)

        async def watchdog(ctx):
            for _ in range(cycles):  # one tick at a time: amaranth closes a bench left waiting here cleanly
                await ctx.tick()
            raise AssertionError(f"the benches did not finish within {cycles} cycles")

        sim.add_testbench(watchdog, background=True)
    for tb in benches:
        sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize(
    "lanes, bits, signed, pipeline",
    [
        (1, 8, False, 0),
        (3, 8, False, 0),
        (7, 4, False, 1),
        (16, 2, False, 2),
        (64, 8, False, 0),
        (64, 8, False, 3),
        (33, 1, False, 0),
        (5, 8, True, 0),
        (12, 4, True, 2),
        (128, 8, False, 2),
    ],
)
def test_sign_flip_tree_matches_golden(lanes, bits, signed, pipeline):
    dut = SignFlipAdderTree(lanes=lanes, in_bits=bits, signed=signed, pipeline=pipeline)
    rng = np.random.default_rng(lanes * 31 + bits)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    cases = [(rng.integers(lo, hi + 1, lanes), rng.integers(0, 2, lanes)) for _ in range(40)]
    for x in (lo, hi):
        for w in (0, 1):
            cases.append((np.full(lanes, x), np.full(lanes, w)))
    assert -(1 << (dut.width - 1)) <= lanes * min(lo, -hi) and lanes * max(hi, -lo) < (1 << (dut.width - 1))

    expected = [int(np.sum(np.where(w == 1, x, -x))) for x, w in cases]

    async def bench(ctx):
        # a new case every cycle: each result must come out exactly `latency` cycles after its inputs
        for step in range(len(cases) + dut.latency):
            if step < len(cases):
                x, w = cases[step]
                for i in range(lanes):
                    ctx.set(dut.x[i], int(x[i]))
                ctx.set(dut.w, int(sum(int(b) << i for i, b in enumerate(w))))
            await ctx.delay(1e-9)
            if step >= dut.latency:
                assert ctx.get(dut.total) == expected[step - dut.latency]
            if dut.latency:
                await ctx.tick()

    _run(dut, bench, clock=bool(dut.latency))


def test_sign_flip_tree_width_is_worst_case():
    assert SignFlipAdderTree(lanes=64, in_bits=8).width == 15  # +-16320
    assert SignFlipAdderTree(lanes=1, in_bits=8).width == 9
    assert SignFlipAdderTree(lanes=784, in_bits=8).width == 19
    with pytest.raises(ValueError, match="lanes"):
        SignFlipAdderTree(lanes=0, in_bits=8)


@pytest.mark.parametrize(
    "lanes, bits, pipeline, ones", [(1, 8, 0, 1.0), (5, 8, 0, 0.5), (16, 2, 2, 0.3), (33, 4, 1, 0.0), (64, 8, 3, 0.5)]
)
def test_constant_weight_tree_matches_golden(lanes, bits, pipeline, ones):
    from hw.constant_tree import ConstantWeightTree

    rng = np.random.default_rng(lanes + bits)
    w = (rng.random(lanes) < ones).astype(int)
    dut = ConstantWeightTree(weights=w, in_bits=bits, pipeline=pipeline)
    hi = (1 << bits) - 1
    cases = [rng.integers(0, hi + 1, lanes) for _ in range(30)] + [np.full(lanes, 0), np.full(lanes, hi)]
    assert dut.width == SignFlipAdderTree(lanes=lanes, in_bits=bits).width
    assert dut.latency == ((lanes - 1).bit_length() + 1) // pipeline if pipeline else dut.latency == 0

    async def bench(ctx):
        for x in cases:
            for i in range(lanes):
                ctx.set(dut.x[i], int(x[i]))
            await ctx.tick().repeat(dut.latency) if dut.latency else ctx.delay(1e-9)
            assert ctx.get(dut.total) == int(np.sum(np.where(w == 1, x, -x)))

    _run(dut, bench, clock=bool(dut.latency))


def test_flip_pair_init_is_sum_propagate_and_carry_data():
    from hw.xilinx_tree import flip_pair_init

    for flip in (0, 1):
        init = flip_pair_init(flip, flip)
        for a, wa, b, wb in np.ndindex(2, 2, 2, 2):
            idx = a | wa << 1 | b << 2 | wb << 3
            ua, ub = a ^ wa ^ flip, b ^ wb ^ flip
            assert (init >> (32 + idx)) & 1 == ua ^ ub  # O6 (I5 = 1): propagate
            assert (init >> idx) & 1 == ua  # O5: carry-mux data


@pytest.mark.parametrize("target", ["portable", "xc7", "xcup"])
def test_tree_latency_rule_matches_trees(target):
    from hw.targets import make_tree, tree_latency

    for lanes in (1, 2, 3, 7, 16, 33, 63, 64, 65):
        for pipeline in (0, 1, 2, 3):
            tree = make_tree(target=target, lanes=lanes, in_bits=4, pipeline=pipeline)
            assert tree_latency(target=target, lanes=lanes, pipeline=pipeline) == tree.latency
            assert tree.width == SignFlipAdderTree(lanes=lanes, in_bits=4).width


def test_make_tree_rejects_unknown_target():
    from hw.targets import make_tree

    with pytest.raises(ValueError, match="target must be one of"):
        make_tree(target="stratix", lanes=4, in_bits=8)


def test_csd_digits():
    for v in [0, 1, -1, 7, 2047, -2047, 12345, -1000, 1 << 20]:
        digits = csd_digits(v)
        assert sum(s << k for k, s in digits) == v
        assert all(b[0] - a[0] >= 2 for a, b in zip(digits, digits[1:]))  # no two adjacent non-zero digits


def _requantize_folds(dut, accs, lanes, out, out_valid):
    """Feed a requantiser every row of ``accs`` fold by fold, one fold per cycle; the outputs, one row per row."""
    got = []

    async def bench(ctx):
        seq = [(i, f) for i in range(len(accs)) for f in range(dut.folds)]
        for step in range(len(seq) + dut.latency):
            if step < len(seq):
                i, f = seq[step]
                for p in range(lanes):
                    ctx.set(dut.acc[p], int(accs[i, f * lanes + p]))
                ctx.set(dut.fold, f)
            ctx.set(dut.valid, step < len(seq))
            await ctx.delay(1e-9)
            if ctx.get(out_valid):
                got.append([ctx.get(out[p]) for p in range(lanes)])
            await ctx.tick()

    _run(dut, bench)
    return np.array(got).reshape(len(accs), dut.folds * lanes)


@pytest.mark.parametrize("neurons, lanes", [(10, 4), (3, 3), (5, 1)])
def test_score_requantizer_matches_golden(neurons, lanes):
    # scales with runs of negative digits (0b...0111 -> +8 -1), negative and zero scales, offsets of both signs
    rng = np.random.default_rng(neurons * 7 + lanes)
    scale = [int(v) for v in rng.integers(-2000, 2000, neurons)]
    scale[:3] = [-1365, 0, 1023][:neurons]
    offset = [int(v) for v in rng.integers(-5000, 5000, neurons)]
    dut = ScoreRequantizer(scale=scale, offset=offset, lanes=lanes, acc_width=10, score_width=24)
    accs = rng.integers(-512, 512, (12, dut.folds * lanes))
    accs[0], accs[1] = -512, 511
    expected = accs[:, :neurons] * np.array(scale) + np.array(offset)
    got = _requantize_folds(dut, accs, lanes, dut.result, dut.result_valid)
    assert np.array_equal(got[:, :neurons], expected)


@pytest.mark.parametrize("abits, neurons, lanes", [(2, 5, 2), (4, 7, 3), (8, 16, 4), (8, 3, 3)])
def test_threshold_search_matches_golden(abits, neurons, lanes):
    rng = np.random.default_rng(abits + neurons)
    thr = np.sort(rng.integers(-300, 300, (neurons, 2**abits - 1)), axis=1)
    orient = rng.choice([-1, 1], neurons)
    dut = ThresholdRequantizer(orientation=orient, thresholds=thr, lanes=lanes, acc_width=11)
    accs = rng.integers(-400, 400, (30, dut.folds * lanes))
    accs[0, :neurons], accs[1, :neurons], accs[2, :neurons] = thr[:, 0], thr[:, -1], thr[:, -1] - 1
    accs[3, :neurons] = -thr[:, 0]
    expected = apply_thresholds(accs[:, :neurons], orient, thr)
    got = _requantize_folds(dut, accs, lanes, dut.result, dut.result_valid)
    assert np.array_equal(got[:, :neurons], expected)


def run_mvu(n_in, n_out, *, pe, simd, in_lanes, in_bits, abits=None, vectors=4, gap=0.3, stall=0.3, pipeline=0, seed=0):
    """Stream random vectors through a MatrixVectorUnit with random input gaps and output stalls; compare with
    the golden layer arithmetic."""
    layer = random_layer(
        n_in=n_in,
        n_out=n_out,
        pe=pe,
        simd=simd,
        in_lanes=in_lanes,
        in_bits=in_bits,
        abits=abits,
        vectors=vectors,
        seed=seed,
        tree_pipeline=pipeline,
    )
    dut, beats, expected = layer.unit, layer.beats, layer.expected
    rng = np.random.default_rng(seed + 1)
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, beats, rng=rng, gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_all(ctx, dut.o, vectors * dut.nf, rng=rng, stall=stall))

    _run(dut, producer, consumer)
    result = np.array([[o[p] for p in range(pe)] for o in got]).reshape(vectors, dut.nf * pe)[:, :n_out]
    return result, expected


@pytest.mark.parametrize(
    "n_in, n_out, pe, simd, in_lanes, in_bits, abits, pipeline",
    [
        (64, 64, 16, 64, 64, 8, 8, 0),  # divides evenly
        (64, 64, 16, 64, 64, 8, 8, 2),  # pipelined trees
        (10, 6, 4, 3, 3, 8, 2, 0),  # neither PE nor SIMD divides
        (13, 7, 3, 5, 4, 4, 4, 1),  # odd everything
        (9, 5, 1, 1, 2, 8, 2, 0),  # fully folded
        (20, 10, 10, 7, 5, 2, None, 0),  # output layer (scores)
        (49, 12, 5, 49, 7, 8, 4, 0),  # SIMD = whole row, one column fold
    ],
)
def test_mvu_matches_golden_under_backpressure(n_in, n_out, pe, simd, in_lanes, in_bits, abits, pipeline):
    got, expected = run_mvu(
        n_in,
        n_out,
        pe=pe,
        simd=simd,
        in_lanes=in_lanes,
        in_bits=in_bits,
        abits=abits,
        pipeline=pipeline,
        seed=n_in + pe,
    )
    assert np.array_equal(got, expected)


def test_mvu_rejects_bad_folding():
    w = np.ones((4, 6), np.int8)
    for pe, simd in ((0, 2), (2, 0), (5, 2), (2, 7)):
        with pytest.raises(ValueError):
            MatrixVectorUnit(
                weights=w, in_bits=8, in_lanes=2, pe=pe, simd=simd, acc_width=12, scores=([1] * 4, [0] * 4, 24)
            )


@pytest.mark.parametrize("depth", [1, 3, 8])
def test_credited_output_keeps_order_and_never_overflows(depth):
    """A producer that starts work only with a credit and delivers each result 1..9 cycles later, a consumer that
    stalls at random: every result comes out once, in order (an overwrite of an unread place would break it).
    Results of 70 bits: the output register's three fetch-enable copies must move together."""
    import random

    from hw.credit_fifo import CreditedOutput

    dut = CreditedOutput(shape=70, depth=depth)
    rng = random.Random(depth)
    sent, got = [], []

    async def producer(ctx):
        pending, n = [], 0
        for cyc in range(500):
            take = ctx.get(dut.has_credit) and rng.random() < 0.7
            ctx.set(dut.take, take)
            if take:
                pending.append((cyc + rng.randint(1, 9), n))
                n += 1
            due = sorted(p for p in pending if p[0] <= cyc)
            ctx.set(dut.w_en, bool(due))
            if due:
                pending.remove(due[0])
                word = due[0][1] * 0x0001_0000_0001_0000_0003 % (1 << 70)  # different bits in every copy
                ctx.set(dut.w_data, word)
                sent.append(word)
            await ctx.tick()
        ctx.set(dut.take, 0)
        ctx.set(dut.w_en, 0)

    async def consumer(ctx):
        for cyc in range(800):
            ctx.set(dut.o.ready, rng.random() < 0.5 if cyc < 500 else 1)
            await ctx.tick()

    async def monitor(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload):
            if valid and ready:
                got.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_process(consumer)
    sim.add_process(monitor)
    sim.run_until(820e-6)
    assert len(sent) > 20 and got == sent


@pytest.mark.parametrize("n_in, n_out, pe, simd, lanes", [(9, 8, 8, 9, 9), (9, 8, 4, 9, 9), (12, 5, 5, 12, 6)])
def test_mvu_keeps_one_step_per_cycle(n_in, n_out, pe, simd, lanes):
    """A vector of one step arriving in one or two beats (a conv layer behind a patch window) is taken every cycle
    (three input banks); the results stay exact."""
    layer = random_layer(
        n_in=n_in, n_out=n_out, pe=pe, simd=simd, in_lanes=lanes, in_bits=4, abits=2, vectors=12, seed=1
    )
    dut, got, stamps = layer.unit, [], []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, layer.beats)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(got) < 12 * dut.nf:
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.o.valid):
                got.append([ctx.get(dut.o.payload[k]) for k in range(pe)])
                stamps.append(cycle)

    _run(dut, producer, consumer)
    assert np.array_equal(np.array(got).reshape(12, -1)[:, :n_out], layer.expected)
    per_vector = np.diff(stamps[dut.nf - 1 :: dut.nf])[-6:]
    # a vector every max(sf * nf, its input beats) cycles: the compute never waits for a bank
    assert max(per_vector) == max(dut.sf * dut.nf, dut.in_beats)


@pytest.mark.parametrize("classes, lanes, gap, stall", [(10, 3, 0.0, 0.0), (10, 3, 0.3, 0.5), (7, 2, 0.0, 0.3)])
def test_argmax_collector_gathers_beats_into_first_argmax(classes, lanes, gap, stall):
    """Images of several score beats, back to back or with gaps, against a consumer that stalls: every result holds
    the image's scores and its first argmax (ties are frequent: scores from a small range)."""
    from hw.argmax import ArgmaxCollector

    rng = np.random.default_rng(classes * 10 + lanes)
    dut = ArgmaxCollector(classes=classes, lanes=lanes, score_width=5)
    images = rng.integers(-3, 4, (40, classes))
    beats = [
        [int(img[b * lanes + k]) if b * lanes + k < classes else 0 for k in range(lanes)]
        for img in images
        for b in range(dut.beats)
    ]
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, beats, rng=rng, gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_all(ctx, dut.o, len(images), rng=rng, stall=stall))

    _run(dut, producer, consumer)
    assert [int(r.cls) for r in got] == [int(np.argmax(img)) for img in images]
    assert [[int(s) for s in r.scores] for r in got] == images.tolist()
