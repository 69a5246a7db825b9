"""boards beyond synth: UART gateware, the board top over a simulated serial line, the host client, build plans,
the sweep report, the FINN cost model, report parsers, flashing and the errors of each."""

import csv
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from amaranth.sim import Simulator
from conftest import have_simulator as _have

from boards import BoardsError
from boards.finn_model import mvau_luts
from boards.flows import parse_vivado_timing, parse_vivado_utilization
from boards.host import decode_frame, frame_layout, infer
from boards.platforms import BOARDS, board, build_plan, parse_nextpnr_log
from boards.uart import UARTReceiver, UARTTransmitter, baud_divisor


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "boards", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def digits_rtl(digits_export, tmp_path_factory):
    from hw.gen import generate

    out = tmp_path_factory.mktemp("board-rtl") / "rtl"
    generate(digits_export[1], out, pe=4, simd=16)
    return digits_export[1], out


# -- UART ----------------------------------------------------------------------------------------------------------


def test_uart_loopback_and_framing_error():
    from amaranth.hdl import Module, Signal

    div = 6
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor=div)
    m.submodules.rx = rx = UARTReceiver(divisor=div)
    glitch = Signal(init=1)
    m.d.comb += rx.rx.eq(tx.tx & glitch)
    sent = [0x00, 0xFF, 0x5A, 0xA5, 0x01, 0x80]
    got = []

    async def send(ctx):
        for b in sent:
            ctx.set(tx.i.payload, b)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            await ctx.tick()
        ctx.set(tx.i.valid, 0)
        await ctx.tick().until(tx.i.ready)
        # a byte whose stop bit is forced low is dropped, not delivered
        ctx.set(tx.i.payload, 0x33)
        ctx.set(tx.i.valid, 1)
        await ctx.tick()
        ctx.set(tx.i.valid, 0)
        await ctx.tick().repeat(9 * div + 1)
        ctx.set(glitch, 0)
        await ctx.tick().repeat(div)
        ctx.set(glitch, 1)

    async def receive(ctx):
        ctx.set(rx.o.ready, 1)
        for _ in range(len(sent) + 1):
            for _ in range(20 * div):
                await ctx.tick()
                if ctx.get(rx.o.valid):
                    got.append(ctx.get(rx.o.payload))
                    break

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run()
    assert got == sent


def test_baud_divisor_checks():
    assert baud_divisor(100e6, 115200) == 868
    with pytest.raises(ValueError, match="cannot be made"):
        baud_divisor(1e6, 400_000)
    with pytest.raises(ValueError, match="divisor"):
        UARTReceiver(divisor=2)


# -- the board top over a simulated serial line ----------------------------------------------------------------------


@pytest.mark.skipif(not _have("icarus"), reason="icarus is not installed (make setup installs it)")
def test_board_top_over_uart_matches_golden(digits_rtl, tmp_path):
    from boards.board_sim import simulate_board

    export_dir, rtl = digits_rtl
    passed, summary = simulate_board(export_dir, rtl, sim="icarus", n=3, work_dir=tmp_path)
    assert passed and summary["images"] == 3
    top = json.loads((rtl / "top.json").read_text())
    assert all(r["cycles"] >= top["fold_bound_cycles"] for r in summary["results"])
    failed, _ = simulate_board(export_dir, rtl, sim="icarus", n=1, work_dir=tmp_path, corrupt=True)
    assert not failed


# -- host client --------------------------------------------------------------------------------------------------


class FakeBoard:
    """A serial port whose far end answers like the board, from the golden model (optionally wrong)."""

    def __init__(self, export_dir, top, *, wrong_image=None, silent=False):
        from export.golden import GoldenModel

        self.golden, self.top = GoldenModel(export_dir), top
        self.pixels, self.buf, self.out = top["pixels"], b"", b""
        self.count, self.wrong_image, self.silent = 0, wrong_image, silent

    def write(self, data):
        self.buf += data
        while len(self.buf) >= self.pixels:
            img, self.buf = np.frombuffer(self.buf[: self.pixels], np.uint8), self.buf[self.pixels :]
            t = self.golden.run(img[None])
            sb, _ = frame_layout(self.top)
            cls = int(t.classes[0]) ^ (1 if self.count == self.wrong_image else 0)
            frame = bytes([cls]) + b"".join(int(s).to_bytes(sb, "little", signed=True) for s in t.scores[0])
            self.out += frame + (123).to_bytes(4, "little")
            self.count += 1

    def read(self, k):
        if self.silent:
            return b""
        data, self.out = self.out[:k], self.out[k:]
        return data


def test_host_infer_against_fake_board(digits_rtl):
    export_dir, rtl = digits_rtl
    top = json.loads((rtl / "top.json").read_text())
    s = infer(FakeBoard(export_dir, top), export_dir, top, n=12, progress=False)
    assert s["images"] == 12 and s["mismatches"] == 0 and s["network_cycles"] == {"min": 123, "max": 123}
    s = infer(FakeBoard(export_dir, top, wrong_image=5), export_dir, top, n=8, progress=False)
    assert s["mismatches"] == 1 and s["first_mismatch"]["image"] == 5
    with pytest.raises(BoardsError, match="no reply"):
        infer(FakeBoard(export_dir, top, silent=True), export_dir, top, n=1, timeout=0.2, progress=False)


def test_decode_frame_layout():
    top = {"ports": {"out": {"scores": {"count": 3, "bits": 10}}}}
    assert frame_layout(top) == (2, 1 + 3 * 2 + 4)
    frame = (
        bytes([2])
        + (-5).to_bytes(2, "little", signed=True)
        + (7).to_bytes(2, "little", signed=True)
        + (0).to_bytes(2, "little", signed=True)
        + (99).to_bytes(4, "little")
    )
    assert decode_frame(frame, top) == (2, [-5, 7, 0], 99)
    with pytest.raises(BoardsError, match="expected 11"):
        decode_frame(frame[:-1], top)


def test_infer_cli_bad_port(digits_rtl):
    export_dir, rtl = digits_rtl
    r = _cli("infer", "--port", "/dev/lutmac-no-such-port", "--export", str(export_dir), "--rtl", str(rtl))
    assert r.returncode == 2 and "--port /dev/lutmac-no-such-port" in r.stderr


# -- build plans, boards, flashing -----------------------------------------------------------------------------------


def test_xilinx_build_plan_without_vivado(digits_rtl, tmp_path, monkeypatch):
    monkeypatch.delenv("AMARANTH_ENV_VIVADO", raising=False)
    _, rtl = digits_rtl
    r = _cli("build", "--rtl", str(rtl), "--board", "arty_a7_35", "-o", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert "plan written" in r.stdout and "Vivado is not installed" in r.stdout
    names = zipfile.ZipFile(tmp_path / "b" / "plan.zip").namelist()
    assert {"lutmac.tcl", "lutmac.xdc", "build_lutmac.sh", "lutmac_network.v"} <= set(names)
    tcl = zipfile.ZipFile(tmp_path / "b" / "plan.zip").read("lutmac.tcl").decode()
    assert "xc7a35ti" in tcl and "lutmac_network.v" in tcl
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["vivado"] is False


def test_ecp5_build_plan_has_open_flow_scripts(digits_rtl):
    _, rtl = digits_rtl
    plan, _ = build_plan(board("ulx3s_85f"), rtl, name="lutmac")
    assert {"lutmac.ys", "lutmac.lpf", "build_lutmac.sh", "lutmac_network.v"} <= set(plan.files)
    script = plan.files["build_lutmac.sh"]
    script = script.decode() if isinstance(script, bytes) else script
    assert "NEXTPNR_ECP5" in script and "--85k" in script


def test_board_errors(digits_rtl, tmp_path):
    _, rtl = digits_rtl
    r = _cli("pnr", "--rtl", str(rtl), "--board", "de0_nano", "-o", str(tmp_path / "p"))
    assert r.returncode == 2 and "unknown BOARD 'de0_nano'" in r.stderr and "ulx3s_85f" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "p").exists()
    r = _cli("pnr", "--rtl", str(rtl), "--board", "arty_a7_35", "-o", str(tmp_path / "p"))
    assert r.returncode == 2 and "lattice-ecp5" in r.stderr
    r = _cli("build", "--rtl", str(rtl), "--board", "ulx3s_85f", "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and "make pnr" in r.stderr and not (tmp_path / "b").exists()


def test_primitive_netlist_refused_on_ecp5(digits_export, tmp_path):
    from hw.gen import generate

    generate(digits_export[1], tmp_path / "rtl", pe=2, simd=8, target="xc7")
    r = _cli("pnr", "--rtl", str(tmp_path / "rtl"), "--board", "ulx3s_85f", "-o", str(tmp_path / "p"))
    assert r.returncode == 2 and "TARGET=portable" in r.stderr


def test_flash_dry_run_and_missing_programmer(tmp_path, monkeypatch):
    for bitstream in ("pnr/ulx3s_85f/lutmac.bit", "build/arty_a7_35/vivado/lutmac.bit"):
        (tmp_path / bitstream).parent.mkdir(parents=True)
        (tmp_path / bitstream).write_bytes(b"\0")
    r = _cli("flash", "--board", "ulx3s_85f", "--dir", str(tmp_path), "--dry-run")
    assert r.returncode == 0 and r.stdout.strip() == f"openFPGALoader -b ulx3s -m {tmp_path}/pnr/ulx3s_85f/lutmac.bit"
    r = _cli("flash", "--board", "arty_a7_35", "--dir", str(tmp_path), "--dry-run")
    assert "arty_a7_35t" in r.stdout and "vivado/lutmac.bit" in r.stdout
    bit = tmp_path / "x.bit"
    bit.write_bytes(b"\0")
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "no-such-loader"))
    r = subprocess.run(
        [sys.executable, "-m", "boards", "flash", "--board", "ulx3s_85f", "--bitstream", str(bit)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "is not installed" in r.stderr and "DRY_RUN=1" in r.stderr
    r = _cli("flash", "--board", "ulx3s_85f", "--dir", str(tmp_path / "empty"))
    assert r.returncode == 2 and "no bitstream" in r.stderr


def test_every_board_resolves():
    for name, b in BOARDS.items():
        plat = __import__(f"amaranth_boards.{b.module}", fromlist=[b.platform])
        assert hasattr(plat, b.platform), name


# -- reports -------------------------------------------------------------------------------------------------------

NEXTPNR_LOG = """
Info: Device utilisation:
Info: 	          TRELLIS_IO:     6/  365     1%
Info: 	          TRELLIS_FF:  2113/83640     2%
Info: 	        TRELLIS_COMB:  9321/83640    11%
Info: 	                DP16KD:    12/  208     5%
Info: Max frequency for clock '$glbnet$clk': 88.10 MHz (PASS at 25.00 MHz)
Info: Max frequency for clock '$glbnet$clk': 91.42 MHz (PASS at 25.00 MHz)
"""


def test_parse_nextpnr_log():
    fmax, util = parse_nextpnr_log(NEXTPNR_LOG)
    assert fmax == {"$glbnet$clk": {"fmax_mhz": 91.42, "constraint_mhz": 25.0}}  # the last (post-route) figure
    assert util["TRELLIS_COMB"] == {"used": 9321, "available": 83640} and util["DP16KD"]["used"] == 12


VIVADO_UTIL = """
+----------------------------+------+-------+-----------+-------+
|          Site Type         | Used | Fixed | Available | Util% |
+----------------------------+------+-------+-----------+-------+
| Slice LUTs                 | 9876 |     0 |     20800 | 47.48 |
|   LUT as Logic             | 9800 |     0 |     20800 | 47.12 |
|   LUT as Memory            |   76 |     0 |      9600 |  0.79 |
| Slice Registers            | 4321 |     0 |     41600 | 10.39 |
| CARRY4                     |  812 |     0 |      8150 |  9.96 |
| Block RAM Tile             | 12.5 |     0 |        50 | 25.00 |
| DSPs                       |    0 |     0 |        90 |  0.00 |
+----------------------------+------+-------+-----------+-------+
"""

VIVADO_TIMING = """
Design Timing Summary
---------------------
    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints
    -------      -------  ---------------------  -------------------
      1.234        0.000                      0                 9000

Clock  Waveform(ns)       Period(ns)      Frequency(MHz)
-----  ------------       ----------      --------------
clk100 {0.000 5.000}      10.000          100.000
"""


def test_fit_errors_say_by_how_much(digits_rtl, tmp_path):
    from boards.flows import fit_error

    _, util = parse_nextpnr_log(NEXTPNR_LOG.replace("9321/83640", "99000/83640"))
    assert fit_error(board("ulx3s_85f"), util) == (
        "ulx3s_85f: the design needs 99000 LUT4 cells, the device has "
        "83640 (15360 too many, 118%); pick a smaller PE/SIMD or a "
        "larger board"
    )
    assert fit_error(board("ulx3s_85f"), parse_nextpnr_log(NEXTPNR_LOG)[1]) is None
    # Xilinx: `make synth`'s utilisation beside the rtl decides before any plan is written
    _, rtl = digits_rtl
    work = tmp_path / "out"
    (work / "synth").mkdir(parents=True)
    shutil.copytree(rtl, work / "rtl")
    (work / "synth" / "utilization.json").write_text(json.dumps({"LUT": 25000}))
    r = _cli("build", "--rtl", str(work / "rtl"), "--board", "arty_a7_35", "-o", str(work / "b"))
    assert r.returncode == 2 and "needs 25000 LUTs" in r.stderr and "4200 too many" in r.stderr
    assert not (work / "b").exists()


def test_parse_vivado_reports():
    assert parse_vivado_utilization(VIVADO_UTIL) == {
        "LUT": 9876,
        "LUTRAM": 76,
        "FF": 4321,
        "CARRY": 812,
        "BRAM": 12.5,
        "DSP": 0,
    }
    t = parse_vivado_timing(VIVADO_TIMING)
    assert t["wns_ns"] == 1.234 and t["clock_period_ns"] == 10.0 and t["fmax_mhz"] == round(1000 / 8.766, 1)
    with pytest.raises(BoardsError, match="Slice LUTs"):
        parse_vivado_utilization("nothing here")


def test_finn_model_by_hand():
    # PE 16, SIMD 64, 784 -> 256, 8-bit in, 8-bit out, binary weights (W = 1, A = 8)
    mult = 64 * (2 * 2 - 1) * 9
    tree = 9 * 127
    alpha = np.log2(784) + 9 - 1
    acc = int(np.ceil(alpha + np.log2(1 + 2**-alpha) + 1))
    thr = 255 * acc * 1
    comp = 255 * acc
    assert mvau_luts(pe=16, simd=64, mw=784, mh=256, a_bits=8, out_bits=8) == int(
        300 + 1.1 * 16 * (mult + tree + acc + thr + comp)
    )
    assert mvau_luts(pe=16, simd=64, mw=256, mh=10, a_bits=8) < mvau_luts(
        pe=16, simd=64, mw=256, mh=10, a_bits=8, out_bits=8
    )


def test_report_sweep_on_tiny_design(tiny_export, tmp_path):
    r = _cli(
        "report",
        "--export",
        str(tiny_export),
        "--pe",
        "1,3",
        "--simd",
        "8",
        "--jobs",
        "2",
        "-o",
        str(tmp_path / "report"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "report" / "sweep.csv")))
    assert [int(row["pe"]) for row in rows] == [1, 3]
    for row in rows:
        assert int(row["DSP"]) == 0 and int(row["LUT"]) > 0 and int(row["mult_baseline_DSP"]) > 0
        assert int(row["finn_model_LUT"]) > 0 and float(row["images_per_s"]) > 0
    assert int(rows[0]["cycles_per_image"]) > int(rows[1]["cycles_per_image"])
    png = (tmp_path / "report" / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_report_bad_lists(tiny_export, tmp_path):
    r = _cli("report", "--export", str(tiny_export), "--pe", "0,2", "-o", str(tmp_path / "r"))
    assert r.returncode == 2 and "--pe" in r.stderr and not (tmp_path / "r").exists()
    r = _cli("report", "--export", str(tiny_export), "--simd", "x", "-o", str(tmp_path / "r"))
    assert r.returncode == 2 and "--simd" in r.stderr
