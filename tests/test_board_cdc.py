"""The board top with the network in its own clock domain: the ECP5 PLL search, the two-clock board top bit-exact
through the UART on Icarus (net clock faster and slower than the UART's), crossings that drop or duplicate bytes
caught, multi-clock nextpnr reports, and the refusals of ``--net-mhz``."""

from fractions import Fraction

import pytest
from conftest import have_simulator

from boards import BoardsError
from boards.ecp5_pll import OUTPUT_MHZ, PFD_MHZ, VCO_MHZ, ecp5_pll_config

needs_icarus = pytest.mark.skipif(not have_simulator("icarus"), reason="icarus is not installed (make setup)")


# -- the PLL search --------------------------------------------------------------------------------------------------


def _in_ranges(c):
    pfd = Fraction(c.input_hz) / c.clki_div / 1_000_000
    out = pfd * c.clkfb_div
    assert PFD_MHZ[0] <= pfd <= PFD_MHZ[1]
    assert OUTPUT_MHZ[0] <= out <= OUTPUT_MHZ[1] and out * 1_000_000 == c.output_hz
    assert VCO_MHZ[0] <= out * c.clkop_div <= VCO_MHZ[1] and out * c.clkop_div * 1_000_000 == c.vco_hz


@pytest.mark.parametrize(
    "f_in, f_out, dividers, achieved",
    [
        (25e6, 100e6, (1, 4, 6), 100e6),  # VCO 600 MHz
        (25e6, 150e6, (1, 6, 4), 150e6),  # VCO 600 MHz
        (25e6, 137e6, (2, 11, 4), 137.5e6),  # the nearest: 0.36 % off, VCO 550 MHz
        (100e6, 125e6, (4, 5, 5), 125e6),  # a 100 MHz oscillator (Versa): PFD 25 MHz, VCO 625 MHz
    ],
)
def test_pll_dividers(f_in, f_out, dividers, achieved):
    c = ecp5_pll_config(f_in, f_out)
    assert (c.clki_div, c.clkfb_div, c.clkop_div) == dividers and c.output_hz == achieved
    assert c.input_hz == f_in and c.requested_hz == f_out
    _in_ranges(c)
    p = c.parameters()
    assert p["FEEDBK_PATH"] == "CLKOP" and p["CLKOP_ENABLE"] == "ENABLED"
    assert (p["CLKI_DIV"], p["CLKFB_DIV"], p["CLKOP_DIV"]) == dividers
    assert p["CLKOP_CPHASE"] == dividers[2] - 1 and p["CLKOP_FPHASE"] == 0


def test_pll_search_is_the_best_within_ranges():
    """No divider set within the ranges comes closer (brute force, independent of the search's pruning)."""
    for target in (100, 137, 33.3):
        c = ecp5_pll_config(25e6, target * 1e6)
        best = min(
            abs(Fraction(25, i) * fb - Fraction(str(target)))
            for i in range(1, 9)
            for fb in range(1, 81)
            for od in range(1, 129)
            if VCO_MHZ[0] <= Fraction(25, i) * fb * od <= VCO_MHZ[1] and OUTPUT_MHZ[0] <= Fraction(25, i) * fb
        )
        assert abs(c.output_hz / 1e6 - target) == pytest.approx(float(best), abs=1e-9)


@pytest.mark.parametrize(
    "f_in, f_out, message",
    [
        (25e6, 500e6, "500 MHz is outside the ECP5 PLL's output range, 3.125 MHz to 400 MHz"),
        (25e6, 2e6, "2 MHz is outside the ECP5 PLL's output range, 3.125 MHz to 400 MHz"),
        (
            25e6,
            4e6,
            "an ECP5 PLL cannot make 4 MHz from 25 MHz within 1% (the nearest is 4.16667 MHz, 4.17% off)",
        ),
        (5e6, 100e6, "the ECP5 PLL takes 8 MHz to 400 MHz in, not 5 MHz"),
        (25e6, 0, "output_hz must be a positive number, not 0"),
    ],
)
def test_pll_refuses(f_in, f_out, message):
    with pytest.raises(ValueError) as e:
        ecp5_pll_config(f_in, f_out)
    assert str(e.value) == message


# -- the board top in two clock domains -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_rtl(torch_single_thread, tiny_export, tmp_path_factory):
    from hw.gen import generate

    out = tmp_path_factory.mktemp("cdc-rtl") / "rtl"
    generate(tiny_export, out, pe=4, simd=10)  # 64 pixels in beats of 10: the last beat is padded
    return tiny_export, out


def test_net_clock_is_a_port_pair_only_when_asked(tiny_rtl):
    import json

    from boards.board_sim import board_verilog
    from boards.board_top import BoardTop

    top = json.loads((tiny_rtl[1] / "top.json").read_text())
    one = board_verilog(top, clk_freq=8e6, baud=1_000_000)
    two = board_verilog(top, clk_freq=8e6, baud=1_000_000, net_clk_freq=21.6e6)
    assert "net_clk" not in one and "bytes_cdc" not in one
    # the ports, in whatever order the backend lists the clock domains
    header = next(line for line in two.splitlines() if line.startswith("module lutmac_board("))
    ports = header[len("module lutmac_board(") : header.index(")")].split(", ")
    assert sorted(ports) == sorted(["clk", "rst", "net_clk", "net_rst", "tx", "led", "rx"]), header
    with pytest.raises(ValueError, match=r"net_clk_freq must be None or a positive frequency in Hz, not 0"):
        BoardTop(top=top, clk_freq=8e6, baud=1_000_000, net_clk_freq=0)


def _board_top(tiny_rtl):
    import json

    from boards.board_top import BoardTop

    return BoardTop(top=json.loads((tiny_rtl[1] / "top.json").read_text()), clk_freq=8e6, baud=1_000_000)


def test_beats_of_an_image_and_its_padded_last_beat(tiny_rtl):
    """Bytes -> beats: every pixel in its lane, and the last beat's lanes past the image are 0 although the beat
    before left pixels there (the network ignores them, the port's contract says zero)."""
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    top = _board_top(tiny_rtl)
    lanes, bits, pixels = top.top["ports"]["in"]["lanes"], top.top["ports"]["in"]["bits"], top.top["pixels"]
    assert pixels % lanes, "the fixture's beats must pad the last one"
    m = Module()
    byte, valid, ready = Signal(8), Signal(), Signal()
    beat, beat_valid, beat_ready, last_beat = top._beats(m, "sync", byte, valid, ready)
    got = []

    async def bench(ctx):
        ctx.set(beat_ready, 1)
        image = [(7 * k + 1) % (1 << bits) for k in range(pixels)]
        for value in image:
            ctx.set(byte, value)
            ctx.set(valid, 1)
            await ctx.tick().until(ready)
            ctx.set(valid, 0)
            while ctx.get(beat_valid):
                got.append((ctx.get(beat), ctx.get(last_beat)))
                await ctx.tick()
        while ctx.get(beat_valid) or not got or not got[-1][1]:
            if ctx.get(beat_valid):
                got.append((ctx.get(beat), ctx.get(last_beat)))
            await ctx.tick()
        want = image + [0] * (-pixels % lanes)
        lanes_of = [[(b >> (k * bits)) & ((1 << bits) - 1) for k in range(lanes)] for b, _ in got]
        assert sum(lanes_of, []) == want and [last for _, last in got] == [False] * (len(got) - 1) + [True]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run_until(1e-3)
    assert got


def test_results_crossing_loses_nothing_when_full(tiny_rtl):
    """A result every cycle into the results crossing while ``sync`` reads one in 7 slower cycles: the FIFO fills,
    the registered ready holds the network back, and every result arrives once, in order."""
    from amaranth.hdl import ClockDomain, Module, Signal
    from amaranth.sim import Simulator

    top = _board_top(tiny_rtl)
    m = Module()
    m.domains += [ClockDomain("sync"), ClockDomain("net")]
    result, valid, ready, cycles = Signal(16), Signal(), Signal(), Signal(32)
    out, out_valid, out_ready, _ = top._results_to_sync(m, result, valid, ready, cycles)
    sent, got = [], []

    async def producer(ctx):
        value = 0
        ctx.set(valid, 1)
        while value < 40:
            ctx.set(result, value)
            *_, took = await ctx.tick("net").sample(ready)
            if took:
                sent.append(value)
                value += 1
        ctx.set(valid, 0)

    async def consumer(ctx):
        while len(got) < 40:
            for _ in range(6):
                await ctx.tick("sync")
            ctx.set(out_ready, 1)
            *_, data, ok = await ctx.tick("sync").sample(out, out_valid)
            ctx.set(out_ready, 0)
            if ok:
                got.append(data)

    sim = Simulator(m)
    sim.add_clock(1e-8, domain="net")
    sim.add_clock(3.1e-8, domain="sync")
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(1e-4)
    assert sent == list(range(40)) and got == sent


@pytest.fixture(scope="module")
def one_clock_frames(tiny_rtl, tmp_path_factory):
    """The single-clock board top's reply frames for 2 images: the reference of the two-clock runs."""
    from boards.board_sim import simulate_board

    export, rtl = tiny_rtl
    passed, summary = simulate_board(export, rtl, n=2, work_dir=tmp_path_factory.mktemp("cdc-sim-1"))
    assert passed and summary["images"] == 2 and summary["mismatches"] == 0
    return [(r["class"], r["scores"], r["cycles"]) for r in summary["results"]]


@needs_icarus
@pytest.mark.parametrize("ratio", [2.7, 0.4])  # the network's clock 2.7x the UART's; 0.4x
def test_two_clock_board_top_bit_exact(tiny_rtl, one_clock_frames, tmp_path, ratio):
    """Every frame byte as the golden model and the single-clock top give it, the cycle count included: it counts
    network cycles from an image's last beat to its result, whatever the UART's clock."""
    from boards.board_sim import simulate_board

    export, rtl = tiny_rtl
    passed, summary = simulate_board(export, rtl, n=2, work_dir=tmp_path, net_ratio=ratio)
    assert passed, summary
    assert [(r["class"], r["scores"], r["cycles"]) for r in summary["results"]] == one_clock_frames
    assert all(r["match"] for r in summary["results"])


def _drops_every_other_byte(real):
    """A broken crossing: every second byte leaves the FIFO without being offered to the beat assembly."""
    from amaranth.hdl import Mux, Signal

    def crossing(self, m, *args):
        byte, valid, ready = real(self, m, *args)
        taken, skip = Signal(), Signal()
        m.d.comb += ready.eq(Mux(skip, valid, taken))
        with m.If(valid & ready):
            m.d.net += skip.eq(~skip)
        return byte, valid & ~skip, taken

    return crossing


def _repeats_the_head(real):
    """A broken crossing: the FIFO's head is offered but never taken, so the beat assembly sees it again and again."""
    from amaranth.hdl import Signal

    def crossing(self, m, *args):
        byte, valid, _ = real(self, m, *args)
        return byte, valid, Signal()

    return crossing


@needs_icarus
@pytest.mark.parametrize("breakage", [_drops_every_other_byte, _repeats_the_head])
def test_a_crossing_that_loses_or_repeats_bytes_is_caught(tiny_rtl, tmp_path, monkeypatch, breakage):
    from boards.board_sim import simulate_board
    from boards.board_top import BoardTop

    monkeypatch.setattr(BoardTop, "_bytes_to_net", breakage(BoardTop._bytes_to_net))
    export, rtl = tiny_rtl
    passed, summary = simulate_board(export, rtl, n=1, work_dir=tmp_path, net_ratio=2.7)
    assert not passed and summary["images"] == 1 and summary["mismatches"] == 1


def test_two_clock_plan_has_the_pll(tiny_rtl):
    from boards.platforms import board, build_plan

    _, rtl = tiny_rtl
    plan, _ = build_plan(board("ulx3s_85f"), rtl, name="lutmac", net_mhz=150)
    il = plan.files["lutmac.il"]
    il = il if isinstance(il, str) else il.decode()
    for line in (
        "cell \\EHXPLLL \\net_pll",
        "parameter \\CLKI_DIV 1",
        "parameter \\CLKFB_DIV 6",
        "parameter \\CLKOP_DIV 4",
        'parameter \\FEEDBK_PATH "CLKOP"',
        'attribute \\FREQUENCY_PIN_CLKOP "150"',
        # the network on the PLL's clock, its reset tied off (init values; no 10k-flip-flop reset net)
        "cell \\lutmac_top \\network\n    connect \\clk \\net_clk [0]\n    connect \\rst 1'0\n",
    ):
        assert line in il, line
    plan, _ = build_plan(board("ulx3s_85f"), rtl, name="lutmac")
    il = plan.files["lutmac.il"]
    assert "EHXPLLL" not in (il if isinstance(il, str) else il.decode())


# -- nextpnr's report of two clocks -----------------------------------------------------------------------------------

# from `python -m boards pnr --scope board --net-mhz 100` of the tiny network (ulx3s_85f, seed 1)
NEXTPNR_TWO_CLOCKS = """\
Info:     Input frequency of PLL 'net_pll' is constrained to 25.0 MHz
Info:     Derived frequency constraint of 100.0 MHz for net net_clk
Info: 	        TRELLIS_COMB:  5121/83640     6%
Info: Max frequency for clock '$glbnet$net_clk': 62.13 MHz (FAIL at 100.00 MHz)
Info: Max frequency for clock     '$glbnet$clk': 109.30 MHz (PASS at 25.00 MHz)
Info: Critical path report for clock '$glbnet$net_clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  0.52  0.52 Source core.network.fc0.wreg3_TRELLIS_FF_Q_1.Q
Info:    routing  1.50  2.02 Net core.network.fc0.wreg3[1] (75,35) -> (79,38)
Info:                          Sink core.network.fc0.acc2_TRELLIS_FF_Q_14.M
Info:      setup  0.00 16.48 Source core.network.fc0.acc2_TRELLIS_FF_Q_14.M
Info: 6.13 ns logic, 10.35 ns routing
Info: Critical path report for clock '$glbnet$clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  0.52  0.52 Source core.rx.timer_TRELLIS_FF_Q.Q
Info:      setup  0.00  7.15 Source core.rx.bits_TRELLIS_FF_Q_3.DI
Info: 2.10 ns logic, 5.05 ns routing
Info: Critical path report for cross-domain path 'posedge $glbnet$clk' -> 'posedge $glbnet$net_clk':
Info:       type curr  total name
Info:   clk-to-q  0.52  0.52 Source core.beats_cdc.produce_w_gry_TRELLIS_FF_Q_1.Q
Info:      setup  0.00  1.51 Source core.beats_cdc.produce_cdc.stage0_TRELLIS_FF_Q_2.M
Info: 0.52 ns logic, 0.98 ns routing
Warning: Max frequency for clock '$glbnet$net_clk': 60.69 MHz (FAIL at 100.00 MHz)
Info: Max frequency for clock     '$glbnet$clk': 139.78 MHz (PASS at 25.00 MHz)
"""


def test_two_clock_timing_summary():
    from boards.flows import _domain_clocks, _timing_summary
    from boards.platforms import parse_critical_paths, parse_nextpnr_log

    fmax, util = parse_nextpnr_log(NEXTPNR_TWO_CLOCKS)
    assert fmax == {  # the post-route figures
        "$glbnet$net_clk": {"fmax_mhz": 60.69, "constraint_mhz": 100.0},
        "$glbnet$clk": {"fmax_mhz": 139.78, "constraint_mhz": 25.0},
    }
    assert util["TRELLIS_COMB"]["used"] == 5121
    paths = parse_critical_paths(NEXTPNR_TWO_CLOCKS)
    assert set(paths) == {"$glbnet$net_clk", "$glbnet$clk"}  # the cross-domain report is no clock's
    assert paths["$glbnet$net_clk"]["ns"] == 16.48 and paths["$glbnet$clk"]["to"] == "core.rx.bits_TRELLIS_FF_Q_3.DI"
    domains = _domain_clocks(fmax, ecp5_pll_config(25e6, 100e6))
    assert domains == {"net": "$glbnet$net_clk", "sync": "$glbnet$clk"}
    top = {"fold_bound_cycles": 8, "layers": []}
    s = _timing_summary(NEXTPNR_TWO_CLOCKS, top, 1.0, network_clock=domains["net"])
    assert s["images_per_s_at_fmax"] == 60.69e6 / 8  # the network's clock, not the UART's
    assert s["critical_path"]["from"] == "core.network.fc0.wreg3_TRELLIS_FF_Q_1.Q"
    assert s["fmax_mhz"] == 60.69  # the slowest clock, as with one


# -- refusals: one line, exit 2, nothing written ----------------------------------------------------------------------


def _boards(capsys, *args):
    from boards.__main__ import main
    from common.cli import run_stage

    with pytest.raises(SystemExit) as e:
        run_stage("boards", lambda: main(list(args)))
    err = capsys.readouterr().err
    return e.value.code, err


def test_net_mhz_refusals(tiny_rtl, tmp_path, capsys):
    _, rtl = tiny_rtl
    out = tmp_path / "out"
    board_args = ("--rtl", str(rtl), "-o", str(out))
    code, err = _boards(capsys, "pnr", "--board", "ulx3s_85f", "--net-mhz", "500", *board_args)
    assert code == 2 and err.count("\n") == 1 and not out.exists()
    assert err == (
        "boards: error: --net-mhz 500 (NET_MHZ) on ulx3s_85f: 500 MHz is outside the ECP5 PLL's output range, "
        "3.125 MHz to 400 MHz\n"
    )
    code, err = _boards(capsys, "pnr", "--board", "ulx3s_85f", "--net-mhz", "4", *board_args)
    assert code == 2 and "cannot make 4 MHz from 25 MHz" in err and not out.exists()
    code, err = _boards(capsys, "pnr", "--board", "ulx3s_85f", "--scope", "network", "--net-mhz", "100", *board_args)
    assert code == 2 and err.startswith("boards: error: --net-mhz 100 (NET_MHZ)") and not out.exists()
    code, err = _boards(capsys, "build", "--board", "arty_a7_35", "--net-mhz", "100", *board_args)
    assert code == 2 and err.count("\n") == 1 and not out.exists()
    assert "--net-mhz 100 (NET_MHZ): arty_a7_35 is a xilinx board" in err and "no MMCM generator yet" in err
    with pytest.raises(BoardsError, match="must be a positive frequency"):
        from boards.platforms import board, net_clock_pll

        net_clock_pll(board("ulx3s_85f"), -1.0)
