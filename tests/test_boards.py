"""boards synth: yosys synth_xilinx utilisation, the DSP-free rule, and a multiplier baseline that does use DSPs."""

import gzip
import json
import subprocess
import sys

import pytest

from boards import BoardsError
from boards.synth import synthesize, utilization
from boards.yosys import classify_cells

MULTIPLIER = """
module mul_baseline(input clk, input [7:0] a, input signed [7:0] b, output reg signed [16:0] p);
  always @(posedge clk) p <= $signed({1'b0, a}) * b;
endmodule
"""


@pytest.fixture(scope="module")
def tiny_rtl(tiny_export, tmp_path_factory):
    from hw.gen import generate

    out = tmp_path_factory.mktemp("tiny-rtl") / "rtl"
    generate(tiny_export, out, pe=3, simd=8)
    return out


def test_synth_tiny_network_is_dsp_free(tiny_rtl, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "boards", "synth", "--rtl", str(tiny_rtl), "-o", str(tmp_path / "s")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    u = json.loads((tmp_path / "s" / "utilization.json").read_text())
    for key in ("family", "LUT", "LUTRAM", "FF", "CARRY", "BRAM", "DSP", "pe", "simd"):
        assert key in u
    assert u["family"] == "xc7" and u["DSP"] == 0 and u["LUT"] > 0 and u["CARRY"] > 0 and u["FF"] > 0
    assert u["pe"] == [3, 3] and u["simd"] == [8, 8] and u["logic_levels"] > 0
    # the yosys log packed, ltp's report without its flood of loop warnings; nothing of yosys on the terminal
    log = gzip.decompress((tmp_path / "s" / "yosys.log.gz").read_bytes()).decode()
    assert "Executing SYNTH_XILINX pass" in log and "Longest topological path" not in log
    ltp = (tmp_path / "s" / "ltp.txt").read_text()
    assert "Longest topological path" in ltp and ltp.count("Detected loop") <= ltp.count("Longest topological path") + 1
    assert len(r.stdout.splitlines()) < 20 and not r.stderr.strip()


def test_synth_reports_utilisation_per_unit_kind(tiny_export, tmp_path):
    """`boards synth` splits the totals by unit kind and by layer: the kinds add up to the totals exactly (the
    netlist keeps the module hierarchy), the adder trees are there, every layer is there, nothing is "other"."""
    from boards.yosys import RESOURCES

    rtl = tmp_path / "rtl"
    r = subprocess.run(
        [sys.executable, "-m", "hw", "gen", "--export", str(tiny_export), "--pe", "2", "--simd", "8", "-o", str(rtl)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "boards", "synth", "--rtl", str(rtl), "-o", str(tmp_path / "s")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    u = json.loads((tmp_path / "s" / "utilization.json").read_text())
    by_unit, by_layer = u["by_unit"], u["by_layer"]
    for k in RESOURCES:
        assert sum(x[k] for x in by_unit.values()) == u[k], k
        assert sum(x[k] for kinds in by_layer.values() for x in kinds.values()) == u[k], k
    assert "other" not in by_unit and u["DSP"] == 0
    assert by_unit["trees"]["LUT"] > 0 and by_unit["trees"]["CARRY"] > 0
    for kind in ("input_buffer", "requantiser", "accumulator", "weights", "fifo", "argmax"):
        assert by_unit[kind]["LUT"] + by_unit[kind]["FF"] > 0, kind
    assert set(u["layers"]) <= set(by_layer) and set(by_layer) <= set(u["layers"]) | {"network"}
    for layer in u["layers"]:
        assert by_layer[layer]["trees"]["LUT"] > 0
    # --weight-memory auto: fc0's ROM (4 row folds x 8 column folds = 32 words) in block RAM, its read register
    # absorbed; fc1's (5 words) in logic with its register; all block RAM is weights
    assert by_layer["fc0"]["weights"]["BRAM"] > 0 and by_layer["fc1"]["weights"]["BRAM"] == 0
    assert by_layer["fc1"]["weights"]["FF"] > 0 and by_unit["weights"]["BRAM"] == u["BRAM"]
    assert "argmax" in by_layer["network"]
    table = r.stdout.splitlines()
    assert table[1].split()[0] == "unit" and table[-1].split()[:2] == ["total", str(u["LUT"])]
    assert any(line.split()[0] == "trees" for line in table[2:-1])


def test_breakdown_walks_instances_and_keeps_unmatched_cells():
    """Each instance's own cells go to the kind its name gives; a module used twice counts twice; an MVU's weight
    ROM cone is taken out of its own cells; unknown names land in "other"."""
    from boards.synth import breakdown

    stat = {
        "modules": {
            "\\top": {"num_cells_by_type": {"IBUF": 3, "LUT2": 1, "top.fc0": 1, "top.mystery": 1}},
            "\\top.fc0": {
                "num_cells_by_type": {"FDRE": 10, "LUT6": 4, "top.fc0.buffer": 1, "top.fc0.requant": 1, "tree": 2}
            },
            "\\top.fc0.buffer": {"num_cells_by_type": {"FDRE": 7}},
            "\\top.fc0.requant": {"num_cells_by_type": {"LUT3": 2, "RAMB18E1": 1}},
            "\\tree": {"num_cells_by_type": {"LUT6_2": 5, "CARRY4": 2}},
            "\\top.mystery": {"num_cells_by_type": {"LUT1": 1}},
        },
        "design": {
            "num_cells_by_type": {
                "LUT2": 1,
                "FDRE": 17,
                "LUT6": 4,
                "LUT3": 2,
                "RAMB18E1": 1,
                "LUT6_2": 10,
                "CARRY4": 4,
                "LUT1": 1,
            }
        },
    }
    instances = {
        "top": [("top.fc0", "fc0"), ("top.mystery", "mystery")],
        "top.fc0": [("top.fc0.buffer", "buffer"), ("top.fc0.requant", "requant"), ("tree", "pe0"), ("tree", "pe1")],
    }
    by_unit, by_layer = breakdown(stat, instances, {"top.fc0": {"FDRE": 4, "LUT6": 3}}, "top", {"fc0": "dense"})
    assert by_unit["trees"]["LUT"] == 10 and by_unit["trees"]["CARRY"] == 4
    assert (by_unit["weights"]["LUT"], by_unit["weights"]["FF"]) == (3, 4)
    assert (by_unit["accumulator"]["LUT"], by_unit["accumulator"]["FF"]) == (1, 6)
    assert by_unit["input_buffer"]["FF"] == 7 and by_unit["requantiser"]["BRAM"] == 0.5
    assert by_unit["control"]["LUT"] == 1 and by_unit["other"]["LUT"] == 1
    assert by_layer["fc0"]["trees"]["LUT"] == 10 and by_layer["network"]["other"]["LUT"] == 1


def test_multiplier_baseline_lands_in_dsps(tmp_path):
    (tmp_path / "mul.v").write_text(MULTIPLIER)
    u = utilization(tmp_path / "mul.v", "mul_baseline", "xc7", tmp_path / "w")
    assert u["DSP"] >= 1 and u["LUT"] < 20


def test_synth_refuses_dsps_and_keeps_previous_output(tiny_rtl, tmp_path):
    out = tmp_path / "synth"
    synthesize(tiny_rtl, out)
    before = (out / "utilization.json").read_text()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "top.v").write_text(MULTIPLIER)
    top = json.loads((tiny_rtl / "top.json").read_text())
    top["top"] = "mul_baseline"
    (bad / "top.json").write_text(json.dumps(top))
    with pytest.raises(BoardsError, match="DSP-free"):
        synthesize(bad, out)
    assert (out / "utilization.json").read_text() == before


def test_xilinx_pe_netlist_beats_portable_rtl(tmp_path):
    """The LUT6_2 + CARRY4 tree maps to fewer LUTs than the portable one, with no DSP and no multiplier."""
    counts = {}
    for style in ("portable", "xc7"):
        out = tmp_path / f"{style}.v"
        r = subprocess.run(
            [sys.executable, "-m", "hw", "pe", "--lanes", "16", "--bits", "8", "-o", str(out)]
            + (["--portable"] if style == "portable" else []),
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        assert (tmp_path / f"{style}_sim_models.v").exists() == (style == "xc7")
        counts[style] = utilization(out, "pe", "xc7", tmp_path / f"w_{style}")
    # every instantiated LUT6_2 survives: the flip level's 16 * 8 / 2 and the ternary adders' above it
    instantiated = (tmp_path / "xc7.v").read_text().count("LUT6_2 ")
    assert counts["xc7"]["DSP"] == 0 and counts["xc7"]["cells"].get("LUT6_2", 0) == instantiated > 16 * 8 // 2
    assert counts["xc7"]["LUT"] < counts["portable"]["LUT"]


def test_classify_cells():
    stat = {
        "design": {
            "num_cells_by_type": {
                "LUT6": 10,
                "LUT2": 5,
                "FDRE": 7,
                "FDSE": 1,
                "CARRY4": 3,
                "RAMB36E1": 2,
                "RAMB18E1": 1,
                "DSP48E1": 1,
                "RAM64X1D": 4,
                "MUXF7": 2,
                "IBUF": 9,
            }
        }
    }
    c = classify_cells(stat)
    assert (c["LUT"], c["FF"], c["CARRY"], c["BRAM"], c["DSP"], c["LUTRAM"], c["MUXF"]) == (15, 8, 3, 2.5, 1, 4, 2)


def test_synth_bad_inputs(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "boards", "synth", "--rtl", str(tmp_path), "-o", str(tmp_path / "s")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "make gen" in r.stderr


def test_memory_init_files_give_the_same_netlist(tmp_path):
    """Synthesis reads memories' initial contents from $readmemh files: the netlist after memory_collect is the same
    as from the word-by-word initial blocks in top.v."""
    from amaranth.back import verilog
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out
    from conftest import run_yosys

    from boards.yosys import memory_init_files

    class Rom(wiring.Component):
        addr: In(6)
        data: Out(13)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=13, depth=40, init=[(i * 2654435761) % 8191 for i in range(37)])
            port = mem.read_port()
            m.d.comb += [port.addr.eq(self.addr), self.data.eq(port.data)]
            return m

    text = verilog.convert(Rom(), name="rom", emit_src=False)
    fast = memory_init_files(text, tmp_path)
    assert "$readmemh" in fast and "initial begin" not in fast.split("$readmemh")[0].split("reg [12:0]")[-1]
    outs = []
    for name, source in (("a", text), ("b", fast)):
        (tmp_path / f"{name}.v").write_text(source)
        run_yosys(
            f"read_verilog {name}.v; hierarchy -top rom; proc; memory_collect; opt_clean; "
            f"write_verilog -noattr {name}_out.v",
            tmp_path,
        )
        outs.append(
            "\n".join(
                line
                for line in (tmp_path / f"{name}_out.v").read_text().splitlines()
                if not line.startswith("/*") and "src" not in line
            )
        )
    assert outs[0] == outs[1]
