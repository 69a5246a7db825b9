"""Which layer first differs: when the network mismatches the golden model on an image, each layer's hardware is
simulated alone, fed the golden model's input of that layer for that image, and compared with the golden model's
output of that layer. A conv network's mismatch is otherwise very hard to place from the final scores alone."""

from pathlib import Path

import numpy as np

from .runner import build_design, run_bench

__all__ = ["locate_mismatch"]


def _beats(values, lanes, group):
    from hw.layers import image_beats

    return image_beats(np.asarray(values)[None], lanes=lanes, group=group)


def _real_lanes(count, lanes, group):
    """Which lanes of ``count`` values' beats (groups of ``group`` padded to ``lanes``) carry values."""
    per = -(-group // lanes)
    mask = np.zeros((count // group, per * lanes), bool)
    mask[:, :group] = True
    return mask.reshape(-1, lanes)


def _read_words(text, lanes, bits, signed):
    rows = []
    for word in text.split():
        v = int(word, 16)
        row = [(v >> (bits * k)) & ((1 << bits) - 1) for k in range(lanes)]
        rows.append([x - (1 << bits) if signed and x >> (bits - 1) else x for x in row])
    return np.array(rows, np.int64).reshape(-1, lanes)


def locate_mismatch(export_dir, top, image_index, *, sim, work_dir):
    """A one-line verdict: the first layer whose hardware alone disagrees with the golden model on image
    ``image_index`` (where and how), or that every layer agrees alone."""
    from amaranth.back import verilog

    from export.golden import GoldenModel
    from export.manifest import load_test_set
    from hw.layers import LayerChain, LayerFolding, UnitOptions, build_layers, geometry_only
    from hw.targets import tree_simulation_models

    golden = GoldenModel(export_dir)
    images, _ = load_test_set(export_dir, golden.manifest)
    image = images[image_index]
    trace = golden.run(image[None])
    outputs = trace.activations + [trace.scores]
    folding = [
        LayerFolding(pe=e.get("pe", 1), simd=e.get("simd", 1), hardwired=e.get("hardwired", False))
        for e in top["layers"]
    ]
    trees = {}
    # the units top.v was generated with (buffers and weight memories included), as top.json records them
    chains = build_layers(golden.layers, folding, options=UnitOptions.from_description(top), tree_modules=trees)
    geometry_only(chains)  # only the layers up to the first difference are simulated
    x = image
    for p, hw, expected in zip(golden.layers, chains, outputs):
        name = f"locate_{p.name}"
        chain = LayerChain(hw)
        text = verilog.convert(chain, name=name, emit_src=False)
        for tname, tree in sorted(trees.items()):
            text += "\n" + verilog.convert(tree, name=tname, emit_src=False)
        d = Path(work_dir) / name
        d.mkdir(parents=True, exist_ok=True)
        sources = [d / f"{name}.v"]
        sources[0].write_text(text)
        models = tree_simulation_models(trees.values())
        if models:
            (d / "models.v").write_text(models)
            sources.append(d / "models.v")
        beats = _beats(x, hw.in_lanes, hw.in_group)
        want = _beats(expected, hw.out_lanes, hw.out_group)
        real = _real_lanes(np.asarray(expected).size, hw.out_lanes, hw.out_group)
        np.savez(d / "vectors.npz", beats=beats)
        out_shape = chain.o.payload.shape()
        bits = out_shape.elem_shape.width
        cfg = {
            "vectors": str((d / "vectors.npz").resolve()),
            "bits": p.in_bits,
            "out_beats": len(want),
            "record": str((d / "outputs.txt").resolve()),
        }
        runner, build_dir = build_design(sim, sources, name, d / "build")
        passed, _ = run_bench(runner, build_dir, name, "sim.benches.stream_bench", d / f"run-{sim}", cfg)
        record = d / "outputs.txt"
        if not passed or not record.exists():
            return f"layer {p.name} ({p.kind}) alone does not deliver its {len(want)} output beats (see {d})"
        got = _read_words(record.read_text(), hw.out_lanes, bits, signed=p.is_output)
        bad = np.argwhere((got != want) & real)
        if len(bad):
            b, lane = (int(v) for v in bad[0])
            return (
                f"layer {p.name} ({p.kind}) is the first to differ alone: {len(bad)} of {int(real.sum())} values; "
                f"first at output beat {b} lane {lane}: expected {want[b, lane]}, got {got[b, lane]}"
            )
        x = expected
    return "every layer matches the golden model alone: the mismatch comes from how the layers are joined"
