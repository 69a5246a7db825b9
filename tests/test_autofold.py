"""Automatic folding (hw.autofold): legal, minimal in MAC lanes, meeting its target; the LUT-budget search; and
``python -m hw fold`` / ``hw gen --target-cycles`` on a real conv export.

Random networks are built from :mod:`common.layers` specs with random ±1 weights and thresholds
(:class:`export.manifest.LayerParams` directly): the folding only reads shapes and widths, and
:class:`hw.network.NetworkTop` (constructed, never elaborated) says what fold bound a folding really gives.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from common.layers import Conv2d, Dense, LayerError, MaxPool2d
from export.folding import signed_bits
from export.manifest import LayerParams
from hw import HardwareError
from hw.autofold import floor_cycles, fold_for_cycles, fold_for_luts
from hw.folding import estimate_luts
from hw.layers import PATCH_WINDOW_BITS, conv_window, window_cycles
from hw.network import NetworkTop


def make_params(specs, *, abits=2, seed=0):
    """:class:`LayerParams` for a chain of layer specs: random ±1 weights, sorted random thresholds, and scores for
    the last layer, with the exporter's widths (``in_bits`` 8 into the first compute layer, ``abits`` after)."""
    rng = np.random.default_rng(seed)
    out, bits = [], 8
    for i, s in enumerate(specs):
        if not s.compute:
            out.append(LayerParams(spec=s, index=i, in_bits=bits))
            continue
        hi = s.columns * ((1 << bits) - 1)
        weights = rng.choice(np.array([-1, 1], np.int8), (s.rows, s.columns))
        common = dict(
            spec=s, index=i, in_bits=bits, weights=weights, acc_bits=signed_bits(-hi, hi), acc_min=-hi, acc_max=hi
        )
        if i == len(specs) - 1:
            scale, offset = rng.integers(-100, 100, s.rows), rng.integers(-1000, 1000, s.rows)
            worst = int(np.abs(scale).max()) * hi + int(np.abs(offset).max())
            out.append(LayerParams(**common, scale=scale, offset=offset, score_bits=signed_bits(-worst, worst)))
        else:
            thresholds = np.sort(rng.integers(-hi, hi + 2, (s.rows, (1 << abits) - 1)), axis=1).astype(np.int32)
            out.append(
                LayerParams(
                    **common,
                    abits=abits,
                    thresholds=thresholds,
                    orientation=rng.choice(np.array([-1, 1], np.int8), s.rows),
                )
            )
            bits = abits
    return out


@st.composite
def networks(draw):
    """A random chain: up to three conv/pool layers (a conv first), then one or two dense."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(3, 9)), draw(st.integers(3, 9)))
    specs, counts = [], {"conv": 0, "pool": 0, "fc": 0}

    def add(make, prefix):
        nonlocal shape
        try:
            layer = make(f"{prefix}{counts[prefix]}", shape)
        except LayerError:
            assume(False)
        counts[prefix] += 1
        specs.append(layer)
        shape = layer.out_shape

    for k in range(draw(st.integers(0, 3))):
        if k > 0 and draw(st.booleans()):
            kernel = draw(st.integers(2, 3))
            add(lambda n, s: MaxPool2d(name=n, in_shape=s, kernel=kernel, stride=kernel), "pool")
        else:
            kernel = draw(st.integers(1, 3))
            conv = dict(
                out_channels=draw(st.integers(1, 10)),
                kernel=kernel,
                stride=draw(st.integers(1, 2)),
                padding=draw(st.integers(0, kernel - 1)),
            )
            add(lambda n, s: Conv2d(name=n, in_shape=s, **conv), "conv")
    for _ in range(draw(st.integers(1, 2))):
        features = draw(st.integers(2, 12))
        add(lambda n, s: Dense(name=n, in_shape=s, out_features=features), "fc")
    return make_params(specs, abits=draw(st.sampled_from([2, 4, 8])), seed=draw(st.integers(0, 2**16)))


def _steps(p, pe, simd):
    """The MVU's cycles per image: ``vectors * ceil(columns / SIMD) * ceil(rows / PE)``."""
    s = p.spec
    return s.vectors * -(-s.columns // simd) * -(-s.rows // pe)


def _cycles(p, pe, simd):
    """A compute layer's cycles per image: its MVU's steps, or its conv window's beats when those are more (the
    window :mod:`hw.layers` picks for the folding)."""
    steps = _steps(p, pe, simd)
    if p.spec.kind == "conv2d":
        return max(steps, window_cycles(p.spec, conv_window(p.spec, p.in_bits, pe, simd)))
    return steps


def _slowest(layers):
    """Cycles per image at PE = SIMD = 1 (the most any automatic folding needs)."""
    return max(_cycles(p, 1, 1) for p in layers if p.spec.compute)


def _fold_bound(layers, folding):
    return NetworkTop(layers=layers, folding=folding).fold_bound_cycles


def _brute_force(p, target):
    """Over every ``(pe, simd)`` of layer ``p`` within ``target`` cycles: the fewest MAC lanes, and the fewest
    padded lanes among those."""
    s = p.spec
    best = None
    for pe in range(1, s.rows + 1):
        nf = -(-s.rows // pe)
        for simd in range(1, s.columns + 1):
            if s.vectors * nf * -(-s.columns // simd) > target or _cycles(p, pe, simd) > target:
                continue
            key = (pe * simd, nf * pe * -(-s.columns // simd) * simd - s.rows * s.columns)
            best = key if best is None else min(best, key)
    return best


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(layers=networks(), data=st.data())
def test_fold_for_cycles_is_legal_minimal_and_meets_the_target(layers, data):
    floor = floor_cycles(layers)
    target = data.draw(st.one_of(st.just(floor), st.integers(floor, max(floor, _slowest(layers)))), label="target")
    folding = fold_for_cycles(layers, target)
    assert len(folding) == len(layers)
    for p, f in zip(layers, folding):
        if not p.spec.compute:
            assert (f.pe, f.simd, f.hardwired) == (1, 1, False)
            continue
        assert 1 <= f.pe <= p.rows and 1 <= f.simd <= p.columns and not f.hardwired
        assert _steps(p, f.pe, f.simd) <= _cycles(p, f.pe, f.simd) <= target
        lanes, waste = _brute_force(p, target)
        assert f.pe * f.simd == lanes, (p.name, f, lanes)
        waste_f = -(-p.rows // f.pe) * f.pe * -(-p.columns // f.simd) * f.simd - p.rows * p.columns
        assert waste_f == waste, (p.name, f, waste)  # ties go to the fewer padded lanes
    # the whole pipeline (windows, pools, input beats) keeps the target too
    assert _fold_bound(layers, folding) <= target
    # and the floor is the floor
    if floor > 1:
        with pytest.raises(HardwareError, match=f"needs at least {floor}"):
            fold_for_cycles(layers, floor - 1)


@pytest.mark.parametrize("target", [0, -5, 2.5, "100", None])
def test_fold_for_cycles_refuses_a_bad_target(target):
    layers = make_params([Dense(name="fc0", in_shape=(1, 4, 4), out_features=3)])
    with pytest.raises(HardwareError, match="positive integer"):
        fold_for_cycles(layers, target)


def test_floor_of_a_conv_net():
    """The floor: a conv layer's window (a patch window walks its padded map; a line buffer, for a patch over
    PATCH_WINDOW_BITS, emits K*K beats per output pixel), the input a pixel per beat; reachable, and no lower."""
    specs = [
        Conv2d(name="conv0", in_shape=(3, 8, 8), out_channels=4, kernel=3, padding=1),
        MaxPool2d(name="pool0", in_shape=(4, 8, 8), kernel=2, stride=2),
        Conv2d(name="conv1", in_shape=(4, 4, 4), out_channels=6, kernel=2, stride=2),
        Dense(name="fc0", in_shape=(6, 2, 2), out_features=5),
    ]
    layers = make_params(specs)
    assert 27 * 8 <= PATCH_WINDOW_BITS
    floor = 10 * 10  # conv0's patch window walks the 10 x 10 padded map
    assert floor_cycles(layers) == floor
    folding = fold_for_cycles(layers, floor)
    assert _fold_bound(layers, folding) == floor
    with pytest.raises(HardwareError, match=f"at least {floor}"):
        fold_for_cycles(layers, floor - 1)

    # a patch too wide for registers: a line buffer, 3 x 3 beats for each of the 4 x 4 output pixels
    wide = make_params(
        [
            Conv2d(name="conv0", in_shape=(80, 4, 4), out_channels=2, kernel=3, padding=1),
            Dense(name="fc0", in_shape=(2, 4, 4), out_features=3),
        ]
    )
    assert 720 * 8 > PATCH_WINDOW_BITS
    assert floor_cycles(wide) == 16 * 9
    assert _fold_bound(wide, fold_for_cycles(wide, 16 * 9)) == 16 * 9

    # an MLP's floor is one cycle per image: its input arrives as one wide beat when SIMD = columns
    mlp = make_params(
        [Dense(name="fc0", in_shape=(1, 8, 8), out_features=7), Dense(name="fc1", in_shape=(7, 1, 1), out_features=3)]
    )
    assert floor_cycles(mlp) == 1
    folding = fold_for_cycles(mlp, 1)
    assert [(f.pe, f.simd) for f in folding] == [(7, 64), (3, 7)] and _fold_bound(mlp, folding) == 1


def test_pool_first_network_meets_its_target():
    layers = make_params(
        [
            MaxPool2d(name="pool0", in_shape=(1, 8, 8), kernel=2, stride=2),
            Dense(name="fc0", in_shape=(1, 4, 4), out_features=10),
        ]
    )
    floor = floor_cycles(layers)
    assert _fold_bound(layers, fold_for_cycles(layers, floor)) <= floor


def test_no_folding_beats_the_floor():
    layers = make_params(
        [
            Conv2d(name="conv0", in_shape=(1, 9, 9), out_channels=2, kernel=3, stride=3, padding=1),
            Dense(name="fc0", in_shape=(2, 3, 3), out_features=3),
        ]
    )
    from hw.layers import LayerFolding

    fastest = min(
        _fold_bound(layers, [LayerFolding(pe=pe, simd=simd), LayerFolding(pe=3, simd=18)])
        for pe in (1, 2)
        for simd in range(1, 10)
    )
    assert floor_cycles(layers) <= fastest
    fold_for_cycles(layers, fastest)


def _lut_estimate(layers, folding):
    return estimate_luts(layers, folding, "portable")


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(layers=networks(), data=st.data())
def test_fold_for_luts_fits_and_a_faster_target_does_not(layers, data):
    floor, slowest = floor_cycles(layers), max(floor_cycles(layers), _slowest(layers))
    cheapest = _lut_estimate(layers, fold_for_cycles(layers, slowest))
    dearest = _lut_estimate(layers, fold_for_cycles(layers, floor))
    budget = data.draw(st.integers(cheapest, max(cheapest, dearest) + 50), label="budget")
    folding, cycles = fold_for_luts(layers, budget, _lut_estimate)
    assert _lut_estimate(layers, folding) <= budget
    achieved = max(_cycles(p, f.pe, f.simd) for p, f in zip(layers, folding) if p.spec.compute)
    assert cycles == max(achieved, floor)
    assert _fold_bound(layers, folding) <= cycles  # what it reports is what the pipeline keeps (or better)
    assert floor <= cycles <= slowest
    if dearest <= budget:
        assert cycles == floor  # everything fits: as fast as the network goes
    if cycles - 1 >= floor:
        # one cycle faster either does not fit or is not reachable with fewer cycles
        faster = fold_for_cycles(layers, cycles - 1)
        assert _lut_estimate(layers, faster) > budget
    if cheapest > 1:
        with pytest.raises(HardwareError, match="over the budget"):
            fold_for_luts(layers, cheapest - 1, _lut_estimate)


# an MLP 72-9-4 (8-bit activations): gen's LUT estimate is not monotone in the target (9 cycles: 1919 LUT est.,
# 11 cycles: 2044), so bisection on the target can miss the fastest folding that fits
_NON_MONOTONE = [
    Dense(name="fc0", in_shape=(2, 9, 4), out_features=9),
    Dense(name="fc1", in_shape=(9, 1, 1), out_features=4),
]


def test_fold_for_luts_returns_the_fewest_cycles_that_fit():
    layers = make_params(_NON_MONOTONE, abits=8)
    floor, slowest = floor_cycles(layers), _slowest(layers)
    budget = 1939
    _, cycles = fold_for_luts(layers, budget, _lut_estimate)
    assert floor <= cycles <= slowest
    faster = [t for t in range(floor, cycles) if _lut_estimate(layers, fold_for_cycles(layers, t)) <= budget]
    assert not faster, f"{cycles} cycles/image returned, but {faster[0]} fit the budget too"


# ---------------------------------------------------------------------------------------------------- CLI


def _hw(*args):
    return subprocess.run([sys.executable, "-m", "hw", *map(str, args)], capture_output=True, text=True)


def test_hw_fold_file_is_accepted_by_gen(digits_conv_ps_export, tmp_path):
    from hw.gen import load_export

    _, layers = load_export(digits_conv_ps_export)
    floor = floor_cycles(layers)
    target = 700
    assert floor < target
    r = _hw("fold", "--export", digits_conv_ps_export, "--cycles", target, "-o", tmp_path / "f.json")
    assert r.returncode == 0, r.stderr
    assert f"(floor {floor})" in r.stdout
    folding = json.loads((tmp_path / "f.json").read_text())
    assert set(folding) == {"conv0", "conv1", "fc0"}  # compute layers only: pool0 has no folding
    assert all(set(v) == {"pe", "simd"} for v in folding.values())
    expect = fold_for_cycles(layers, target)
    assert folding == {p.name: {"pe": f.pe, "simd": f.simd} for p, f in zip(layers, expect) if p.spec.compute}

    r = _hw("gen", "--export", digits_conv_ps_export, "--folding", tmp_path / "f.json", "-o", tmp_path / "rtl")
    assert r.returncode == 0, r.stderr
    top = json.loads((tmp_path / "rtl" / "top.json").read_text())
    assert {e["name"]: {"pe": e["pe"], "simd": e["simd"]} for e in top["layers"] if "pe" in e} == folding
    assert floor <= top["fold_bound_cycles"] <= target
    for e in top["layers"]:
        if "pe" in e:
            assert e["vectors"] * e["sf"] * e["nf"] <= target

    # gen --target-cycles chooses the same folding itself
    r = _hw("gen", "--export", digits_conv_ps_export, "--target-cycles", target, "-o", tmp_path / "rtl2")
    assert r.returncode == 0, r.stderr
    top2 = json.loads((tmp_path / "rtl2" / "top.json").read_text())
    assert [(e.get("pe"), e.get("simd")) for e in top2["layers"]] == [
        (e.get("pe"), e.get("simd")) for e in top["layers"]
    ]

    # a LUT budget: the file's folding fits gen's estimate
    r = _hw("fold", "--export", digits_conv_ps_export, "--luts", 900, "-o", tmp_path / "l.json")
    assert r.returncode == 0, r.stderr
    by_name = json.loads((tmp_path / "l.json").read_text())
    from hw.folding import resolve_folding

    lut_folding = resolve_folding(layers, pe=1, simd=1, folding_file=tmp_path / "l.json")
    assert set(by_name) == {"conv0", "conv1", "fc0"} and estimate_luts(layers, lut_folding, "portable") <= 900


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "give exactly one of --cycles and --luts"),
        (["--cycles", "700", "--luts", "900"], "give exactly one of --cycles and --luts"),
        (["--cycles", "FLOOR-1"], "needs at least FLOOR"),
        (["--luts", "10"], "over the budget of 10"),
    ],
)
def test_hw_fold_refusals(digits_conv_ps_export, tmp_path, args, words):
    from hw.gen import load_export

    floor = floor_cycles(load_export(digits_conv_ps_export)[1])
    args = [str(floor - 1) if a == "FLOOR-1" else a for a in args]
    words = words.replace("FLOOR", str(floor))
    r = _hw("fold", "--export", digits_conv_ps_export, *args, "-o", tmp_path / "f.json")
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
    assert not (tmp_path / "f.json").exists()
