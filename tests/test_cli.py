"""Every stage's CLI ends the same way: Ctrl-C is one line and exit 130, errors one line and exit 2."""

import signal
import subprocess
import sys
import time

import pytest
from conftest import sigint_default


@pytest.mark.parametrize(
    "stage, args",
    [
        ("hw", ["gen", "--pe", "1", "--simd", "1", "--hardwired", "fc1"]),  # ~12 s of work, not ~3
        ("boards", ["synth"]),
    ],
)
def test_ctrl_c_is_one_line_and_exit_130(digits_export, tmp_path, stage, args):
    """SIGINT while the stage works (generating Verilog; waiting for yosys) prints one line, no traceback."""
    if stage == "hw":
        args = args + ["--export", str(digits_export[1]), "-o", str(tmp_path / "rtl")]
    else:
        rtl = tmp_path / "rtl0"
        subprocess.run(
            [sys.executable, "-m", "hw", "gen", "--export", str(digits_export[1]), "-o", str(rtl)],
            check=True,
            capture_output=True,
        )
        args = args + ["--rtl", str(rtl), "-o", str(tmp_path / "synth")]
    p = subprocess.Popen(
        [sys.executable, "-m", stage, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    time.sleep(3)  # past start-up (imports take ~1 s), inside the work (both take 10 s or more)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err[-2000:])
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == f"{stage}: interrupted" and "Traceback" not in err
    assert not (tmp_path / "rtl").exists() and not (tmp_path / "synth").exists()


@pytest.mark.parametrize("stage", ["train", "export", "hw", "sim", "boards"])
def test_stages_run_from_an_out_folder(tmp_path, stage):
    """`cd build/digits-tfc && python -m hw gen --export export ...`: folders named like the stages in the working
    directory (an OUT folder holds train/ and export/) must not shadow them."""
    for name in ("train", "export", "common"):
        (tmp_path / name).mkdir()
    r = subprocess.run([sys.executable, "-m", stage, "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1000:]
