"""python -m export: checkpoint -> packed weights, folded integer parameters, manifest; `check` re-verifies;
`qonnx` writes the export as a QONNX graph; `from-qonnx` imports a binary-weight MLP from one."""

import argparse
import sys
from pathlib import Path

from . import ExportError

_USAGE = """python -m export --checkpoint OUT/train/model.pt -o OUT/export [--thresholds auto|table|progression]
       python -m export check OUT/export
       python -m export qonnx OUT/export -o model.onnx [--check [N]]
       python -m export from-qonnx --model model.onnx -o OUT/export [--dataset digits] [--input unit|pixels]"""


def _check(directory):
    from .golden import GoldenModel
    from .manifest import load_test_set

    g = GoldenModel(directory)  # verifies every hash and header
    images, labels = load_test_set(directory, g.manifest)
    acc = float((g.classify(images) == labels).mean())
    m = g.manifest
    recorded = m["golden_test_accuracy"]
    if recorded is not None and abs(acc - recorded) > 1e-12:
        raise ExportError(f"{directory}: golden accuracy {acc:.4f} differs from the manifest's {recorded:.4f}")
    weights = sum(layer.weights.size for layer in g.layers if layer.weights is not None)
    print(
        f"{directory}: {len(g.layers)} layers, {weights} weights, widths and hashes OK; float model (sign weights) "
        f"{100 * m['float_test_accuracy']:.2f}%, golden {100 * acc:.2f}% (gap "
        f"{100 * (acc - m['float_test_accuracy']):+.2f} pp) on {len(labels)} test images"
        f"{' [synthetic data]' if m.get('synthetic') else ''}"
    )
    return 0


def _count(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of images (leave N out for the whole test set)")
    return n


def _qonnx(argv):
    import time
    from collections import Counter

    p = argparse.ArgumentParser(
        prog="python -m export qonnx",
        description="Write an export directory as a QONNX graph (FINN/hls4ml/Brevitas ONNX "
        "dialect), exact to the golden model (export/qonnx.py says how).",
    )
    p.add_argument("directory", help="an export directory (python -m export -o ...)")
    p.add_argument("-o", "--out", required=True, help="the .onnx file to (re)write atomically")
    p.add_argument(
        "--check",
        nargs="?",
        type=_count,
        const=0,
        default=None,
        metavar="N",
        help="run the first N test images (all without N) through qonnx's execute_onnx and compare classes "
        "and scores with the golden model; exit 1 on any mismatch",
    )
    a = p.parse_args(argv)
    if Path(a.out).resolve().parent == Path(a.directory).resolve():
        raise ExportError(
            f"{a.out}: write the .onnx outside the export directory (the export stage replaces that "
            f"folder as a whole and refuses one holding foreign files)"
        )
    from .qonnx import check_model, load_model, write_qonnx

    model = write_qonnx(a.directory, a.out)
    ops = Counter(n.op_type for n in model.graph.node)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.model.opset_import)
    print(
        f"{a.out}: {len(model.graph.node)} nodes ({', '.join(f'{k} x{v}' for k, v in ops.items())}), "
        f"{Path(a.out).stat().st_size} bytes, opsets {opsets}"
    )
    if a.check is None:
        return 0
    t = time.perf_counter()
    r = check_model(load_model(a.out), a.directory, a.check or None)
    n = r["images"]
    print(
        f"{a.out}: {r['class_matches']}/{n} classes and {r['score_matches']}/{n} score vectors equal the golden "
        f"model's (qonnx execute_onnx, {time.perf_counter() - t:.1f} s)"
    )
    return 0 if r["class_matches"] == n and r["score_matches"] == n else 1


def _from_qonnx(argv):
    import time

    from .qonnx_import import INPUT_MODES

    p = argparse.ArgumentParser(
        prog="python -m export from-qonnx",
        description="Import a binary-weight MLP from a QONNX graph (Brevitas' export_qonnx, FINN, python -m export "
        "qonnx) as an export directory that `python -m hw gen` and `python -m sim` take; its golden model is "
        "compared with qonnx's execution of the graph on the test set (export/qonnx_import.py says how).",
    )
    p.add_argument("--model", required=True, help="the .onnx file: QONNX ops (Quant, BipolarQuant, MultiThreshold)")
    p.add_argument("-o", "--out", required=True, help="export directory to (re)write atomically")
    p.add_argument(
        "--dataset",
        default="digits",
        help="the data set whose test split becomes the export's test set: a name as in `make DATASET=...` or a "
        "path to an .npz or a folder of IDX files (default digits)",
    )
    p.add_argument(
        "--input",
        choices=tuple(INPUT_MODES),
        default="unit",
        help="what the graph's input holds for a pixel p: "
        + "; ".join(f"{k}: {v}" for k, v in INPUT_MODES.items())
        + " (default unit, as Brevitas models are trained; pixels for graphs from python -m export qonnx)",
    )
    a = p.parse_args(argv)
    from common import LutmacError
    from common.files import check_output_dir

    from .qonnx_import import import_qonnx

    check_output_dir(a.out, stage="export")  # before the data set loads
    try:
        from train.data import load_dataset

        splits = load_dataset(a.dataset)
    except LutmacError as e:
        raise ExportError(str(e)) from None
    t = time.perf_counter()
    m = import_qonnx(
        a.model,
        a.out,
        dataset=a.dataset,
        images=splits.test.images,
        labels=splits.test.labels,
        synthetic=bool(getattr(splits, "synthetic", False)),
        input_mode=a.input,
    )
    n, matches = m["test_set"]["count"], m["source"]["class_matches"]
    print(
        f"{a.out}: {len(m['layers'])} layers ({m['arch']}, activation bits "
        f"{', '.join(str(e['abits']) for e in m['layers'][:-1]) or '-'}) from {a.model}; graph (qonnx execute_onnx) "
        f"{100 * m['float_test_accuracy']:.2f}%, golden {100 * m['golden_test_accuracy']:.2f}%, same class on "
        f"{matches}/{n} test images ({time.perf_counter() - t:.1f} s)"
    )
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["qonnx"]:
        return _qonnx(argv[1:])
    if argv[:1] == ["from-qonnx"]:
        return _from_qonnx(argv[1:])
    if argv[:1] == ["check"]:
        p = argparse.ArgumentParser(prog="python -m export check", description="Re-verify an export directory.")
        p.add_argument("directory", help="the export directory to check (python -m export -o ...)")
        return _check(p.parse_args(argv[1:]).directory)
    p = argparse.ArgumentParser(
        prog="python -m export",
        usage=_USAGE,
        description="Export a trained BinaryConnect checkpoint for the hardware generator.",
    )
    p.add_argument("--checkpoint", required=True, help="train/model.pt")
    p.add_argument("-o", "--out", required=True, help="export directory to (re)write atomically")
    p.add_argument(
        "--thresholds",
        choices=("auto", "table", "progression"),
        default="auto",
        help="hidden layers' thresholds: a table of 2^abits-1 per neuron, a progression (two fixed-point "
        "constants per neuron, exact; refused where none is), or auto (default): the progression "
        "where it is exact and stores fewer bits (docs/folding.md)",
    )
    a = p.parse_args(argv)
    from .exporter import export_checkpoint

    m = export_checkpoint(a.checkpoint, a.out, warn=lambda s: print(s, file=sys.stderr), thresholds=a.thresholds)
    from .golden import GoldenModel

    layers = GoldenModel(a.out).layers
    nweights = sum(p.weights.size for p in layers if p.weights is not None)
    size = sum((Path(a.out) / e["weights"]).stat().st_size for e in m["layers"] if "weights" in e)
    print(
        f"{a.out}: {len(layers)} layers, {nweights} weights in {size} bytes; float model (sign weights) "
        f"{100 * m['float_test_accuracy']:.2f}%, golden {100 * m['golden_test_accuracy']:.2f}% on "
        f"{m['test_set']['count']} test images{' [synthetic data: accuracy is meaningless]' if m['synthetic'] else ''}"
    )
    print(_threshold_summary(m))
    return 0


def _threshold_summary(m):
    """One line: each hidden layer's threshold representation and its storage bits against the table's."""
    from .folding import threshold_storage_bits

    parts, total, table_total = [], 0, 0
    for e in m["layers"]:
        act = e.get("activation", {})
        if act.get("kind") not in ("thresholds", "progression"):
            continue
        rows = e["out_features"] if e["kind"] == "dense" else e["out_channels"]
        kw = dict(rows=rows, levels=act["levels"], acc_min=e["acc_min"], acc_max=e["acc_max"])
        table = threshold_storage_bits("table", **kw)
        if act["kind"] == "progression":
            bits = threshold_storage_bits("progression", **kw, frac_bits=act["frac_bits"])
            parts.append(f"{e['name']} progression F={act['frac_bits']} {bits} bits")
        else:
            bits = table
            parts.append(f"{e['name']} table {bits} bits")
        total, table_total = total + bits, table_total + table
    return (
        f"thresholds: {'; '.join(parts)}; {total} bits in all, tables would take {table_total} "
        f"({table_total / max(1, total):.1f}x)"
    )


if __name__ == "__main__":
    from common.cli import run_stage

    run_stage("export", main)
