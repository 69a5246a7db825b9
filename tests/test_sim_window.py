"""The sliding window and max-pool as Verilog on Verilator and Icarus (cocotb), against export.conv."""

import pytest
from conftest import have_simulator as _have

from sim.units import simulate_maxpool, simulate_window

SIMS = [
    pytest.param(s, marks=pytest.mark.skipif(not _have(s), reason=f"{s} is not installed (make setup installs it)"))
    for s in ("verilator", "icarus")
]

# Icarus takes every shape; the first of each list also runs on Verilator under `make test-slow` (a build takes
# ~20 s; `make test` has the window and pool on Verilator inside the conv network's end-to-end test)
WINDOWS = [
    dict(channels=5, height=7, width=5, kernel=3, stride=2, padding=2, bits=3, in_lanes=3),  # odd C, L < C, stride 2
    dict(channels=3, height=5, width=6, kernel=3, stride=1, padding=1, bits=4, in_lanes=8),  # L > C, padding 1
]
POOLS = [
    dict(channels=5, height=5, width=7, kernel=2, bits=4, lanes=2),  # odd C and map (remainder dropped)
    dict(channels=3, height=6, width=6, kernel=3, bits=2, lanes=4),
]


def _cases(shapes, ids):
    return [
        pytest.param(
            sim, shape, id=f"{ids(shape)}-{sim}", marks=[*SIMS[s].marks, *([pytest.mark.slow] if s == 0 else [])]
        )
        for k, shape in enumerate(shapes)
        for s, sim in enumerate(("verilator", "icarus"))
        if k == 0 or s == 1
    ]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("sim-window")


@pytest.mark.parametrize(
    "sim, shape", _cases(WINDOWS, "c{channels}_{height}x{width}_k{kernel}s{stride}p{padding}".format_map)
)
def test_window_bench(sim, work, shape):
    assert simulate_window(**shape, sim=sim, work_dir=work, seed=1)


@pytest.mark.parametrize("sim, shape", _cases(POOLS, "c{channels}_{height}x{width}_k{kernel}".format_map))
def test_maxpool_bench(sim, work, shape):
    assert simulate_maxpool(**shape, sim=sim, work_dir=work, seed=2)


@pytest.mark.parametrize("sim", [pytest.param("verilator", marks=[*SIMS[0].marks, pytest.mark.slow]), SIMS[1]])
def test_map_benches_can_fail(sim, work):
    """A deliberately wrong expectation makes the bench report failure (the designs are already built)."""
    assert not simulate_window(**WINDOWS[0], sim=sim, work_dir=work, seed=1, corrupt=True)
    assert not simulate_maxpool(**POOLS[0], sim=sim, work_dir=work, seed=2, corrupt=True)
