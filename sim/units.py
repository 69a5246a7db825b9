"""PE and layer benches: generate the unit's Verilog with hw/, its vectors with the golden arithmetic, and run."""

from pathlib import Path

import numpy as np

from .runner import build_design, run_bench

__all__ = ["simulate_pe", "simulate_layer"]


def _write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def simulate_pe(
    *, lanes, bits, pipeline=0, signed=False, target="portable", sim, work_dir, vectors=200, corrupt=False, seed=0
):
    """Run the PE bench on ``target``'s netlist (Xilinx ones with the primitives' behavioural models); returns True
    when every vector matched."""
    from amaranth.back import verilog

    from hw.targets import make_tree, tree_simulation_models

    pe = make_tree(target=target, lanes=lanes, in_bits=bits, signed=signed, pipeline=pipeline)
    name = f"pe_{target}_l{lanes}_b{bits}_p{pipeline}_{'s' if signed else 'u'}"
    srcs = [_write(Path(work_dir) / f"{name}.v", verilog.convert(pe, name=name, emit_src=False))]
    models = tree_simulation_models([pe])
    if models:
        srcs.append(_write(Path(work_dir) / f"{name}_models.v", models))
    runner, build_dir = build_design(sim, srcs, name, Path(work_dir) / "build")
    cfg = {
        "lanes": lanes,
        "bits": bits,
        "signed": signed,
        "latency": pe.latency,
        "vectors": vectors,
        "corrupt": corrupt,
        "seed": seed,
    }
    passed, _ = run_bench(
        runner, build_dir, name, "sim.benches.pe_bench", Path(work_dir) / f"run-{sim}-{name}-{int(corrupt)}", cfg
    )
    return passed


def simulate_layer(
    *,
    n_in,
    n_out,
    pe,
    simd,
    in_lanes,
    in_bits,
    abits=None,
    sim,
    work_dir,
    vectors=3,
    gap=0.3,
    stall=0.3,
    corrupt=False,
    seed=0,
):
    """Run the layer bench on a random layer (thresholds when ``abits``, else output scores)."""
    from amaranth.back import verilog

    from hw.test_vectors import random_layer

    trees = {}
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
        tree_modules=trees,
    )
    unit, expected = layer.unit, layer.expected
    name = f"mvu_{n_in}x{n_out}_p{pe}_s{simd}_l{in_lanes}_b{in_bits}_a{abits or 0}_{seed}"
    text = verilog.convert(unit, name=name, emit_src=False)
    for tname, tree in trees.items():
        text += "\n" + verilog.convert(tree, name=tname, emit_src=False)
    src = _write(Path(work_dir) / f"{name}.v", text)
    beats = np.array(layer.beats, np.int64)
    exp = np.zeros((vectors, unit.nf * pe), np.int64)
    exp[:, :n_out] = expected
    run_dir = Path(work_dir) / f"run-{sim}-{name}-{int(corrupt)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    real = np.zeros((vectors, unit.nf * pe), bool)
    real[:, :n_out] = True  # lanes beyond the layer are padding: their values are don't-care
    np.savez(
        run_dir / "vectors.npz",
        beats=beats,
        expected=exp.reshape(vectors * unit.nf, pe),
        real=real.reshape(vectors * unit.nf, pe),
    )
    runner, build_dir = build_design(sim, [src], name, Path(work_dir) / "build")
    cfg = {
        "vectors": str((run_dir / "vectors.npz").resolve()),
        "in_bits": in_bits,
        "in_lanes": in_lanes,
        "pe": pe,
        "out_bits": unit.out_shape.width,
        "signed_out": abits is None,
        "gap": gap,
        "stall": stall,
        "corrupt": corrupt,
        "seed": seed,
    }
    passed, _ = run_bench(runner, build_dir, name, "sim.benches.layer_bench", run_dir, cfg)
    return passed


__all__ += ["simulate_window", "simulate_maxpool"]


def _map_beats(x, lanes, rng=None):
    """Maps ``x`` (N, H, W, C) as stream beats, ``ceil(C / lanes)`` per pixel; padding lanes random when ``rng``
    (a unit must ignore them), else zero."""
    n, h, w, c = x.shape
    per_pixel = -(-c // lanes)
    padded = (
        np.zeros((n, h, w, per_pixel * lanes), np.int64)
        if rng is None
        else rng.integers(0, int(x.max()) + 1, (n, h, w, per_pixel * lanes))
    )
    padded[..., :c] = x
    return padded.reshape(-1, lanes)


def _run_map_bench(unit, name, beats, expected, *, bits, sim, work_dir, gap, stall, corrupt, seed):
    from amaranth.back import verilog

    src = _write(Path(work_dir) / f"{name}.v", verilog.convert(unit, name=name, emit_src=False))
    run_dir = Path(work_dir) / f"run-{sim}-{name}-{seed}-{int(corrupt)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    np.savez(run_dir / "vectors.npz", beats=beats, expected=expected)
    runner, build_dir = build_design(sim, [src], name, Path(work_dir) / "build")
    cfg = {
        "vectors": str((run_dir / "vectors.npz").resolve()),
        "bits": bits,
        "gap": gap,
        "stall": stall,
        "corrupt": corrupt,
        "seed": seed,
    }
    passed, _ = run_bench(runner, build_dir, name, "sim.benches.window_bench", run_dir, cfg)
    return passed


def simulate_window(
    *,
    channels,
    height,
    width,
    kernel,
    stride=1,
    padding=0,
    bits,
    in_lanes,
    sim,
    work_dir,
    images=2,
    gap=0.3,
    stall=0.3,
    corrupt=False,
    seed=0,
):
    """Run the map bench on a :class:`~hw.sliding_window.SlidingWindow` with ``images`` random maps back to back
    against :func:`export.conv.patches`; returns True when every beat matched."""
    from export.conv import patches
    from hw.sliding_window import SlidingWindow

    unit = SlidingWindow(
        channels=channels,
        height=height,
        width=width,
        kernel=kernel,
        stride=stride,
        padding=padding,
        bits=bits,
        in_lanes=in_lanes,
    )
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**bits, (images, height, width, channels))
    expected = patches(x, kernel=kernel, stride=stride, padding=padding).reshape(-1, channels)
    name = f"window_c{channels}_{height}x{width}_k{kernel}_s{stride}_p{padding}_b{bits}_l{in_lanes}"
    return _run_map_bench(
        unit,
        name,
        _map_beats(x, in_lanes, rng),
        expected,
        bits=bits,
        sim=sim,
        work_dir=work_dir,
        gap=gap,
        stall=stall,
        corrupt=corrupt,
        seed=seed,
    )


def simulate_maxpool(
    *, channels, height, width, kernel, bits, lanes, sim, work_dir, images=2, gap=0.3, stall=0.3, corrupt=False, seed=0
):
    """Run the map bench on a :class:`~hw.maxpool.MaxPool` with ``images`` random maps back to back against
    :func:`export.conv.maxpool` (padding lanes of the output zero); returns True when every beat matched."""
    from export.conv import maxpool
    from hw.maxpool import MaxPool

    unit = MaxPool(channels=channels, height=height, width=width, kernel=kernel, bits=bits, lanes=lanes)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**bits, (images, height, width, channels))
    expected = _map_beats(maxpool(x, kernel), lanes)
    name = f"maxpool_c{channels}_{height}x{width}_k{kernel}_b{bits}_l{lanes}"
    return _run_map_bench(
        unit,
        name,
        _map_beats(x, lanes, rng),
        expected,
        bits=bits,
        sim=sim,
        work_dir=work_dir,
        gap=gap,
        stall=stall,
        corrupt=corrupt,
        seed=seed,
    )
