"""Output folders: a wrong path never destroys data.

``common.files`` (atomic folders and files with a stage marker, claimed build caches, the checks behind them), then
every stage's real command line pointed at the wrong place: each must exit 2 with one line naming the path and the
reason, touch nothing, and leave no temporary folder behind. Also: permissions under the umask, ``flash --dry-run``
without a bitstream, and the boards' fit check by ``make gen``'s LUT estimate.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from common.files import (
    MARKER,
    OutputError,
    atomic_directory,
    atomic_path,
    atomic_write_text,
    check_output_dir,
    claim_directory,
    output_stage,
)

REPO = Path(__file__).resolve().parent.parent
LEFTOVER = re.compile(r"^\..*\.(tmp|old)$")


# -- helpers -------------------------------------------------------------------------------------------------------


def tree_state(root, *, times=True):
    """Every path under ``root`` (``root`` included) with its kind, mode, content hash and (``times``) mtime: equal
    before and after means nothing was created, removed, written or renamed."""
    root = Path(root)
    state = {}
    for p in [root, *sorted(root.rglob("*"))]:
        st = p.lstat()
        rel = str(p.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            entry = ("link", os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            entry = ("dir", stat.S_IMODE(st.st_mode))
        else:
            entry = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
        state[rel] = entry + ((st.st_mtime_ns,) if times else ())
    return state


def leftovers(root):
    return sorted(str(p) for p in Path(root).rglob(".*") if LEFTOVER.match(p.name))


def stage(*args, cwd=None, env=None, umask=None, timeout=300):
    """``python -m STAGE ARGS`` as a user runs it."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH")]))
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def assert_refused(r, path, *reason):
    """Exit status 2 and exactly one line on stderr naming ``path`` and the ``reason`` words."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert str(path) in line or str(Path(path).resolve()) in line, line
    for word in reason:
        assert word in line, line
    return line


def assert_untouched(root, before):
    assert tree_state(root) == before
    assert leftovers(root) == []


def make_out(tmp_path, train_dir, export_dir, name="OUT"):
    """``OUT`` as ``make`` leaves it: ``train/`` and ``export/`` (copies of a real run)."""
    out = tmp_path / name
    out.mkdir()
    shutil.copytree(train_dir, out / "train")
    shutil.copytree(export_dir, out / "export")
    return out


@pytest.fixture(scope="module")
def tiny_rtl(tiny_export, tmp_path_factory):
    """``hw gen`` output of the tiny export (PE 2, SIMD 8), generated once."""
    from hw.gen import generate

    rtl = tmp_path_factory.mktemp("outputs-rtl") / "rtl"
    generate(tiny_export, rtl, pe=2, simd=8, warn=lambda s: None)
    return rtl


@pytest.fixture
def out(tmp_path, tiny_export, tiny_rtl):
    """``OUT`` with ``train/``, ``export/`` and ``rtl/`` of the tiny network, and a user's file beside them."""
    o = make_out(tmp_path, tiny_export.parent / "train", tiny_export)
    shutil.copytree(tiny_rtl, o / "rtl")
    (tmp_path / "notes.txt").write_text("a user's file\n")
    return o


# -- common.files: atomic_directory --------------------------------------------------------------------------------


def _fill(tmp, **files):
    for name, text in files.items():
        (Path(tmp) / name).write_text(text)


def test_atomic_directory_creates_replaces_and_marks(tmp_path):
    d = tmp_path / "a" / "rtl"
    with atomic_directory(d, stage="gen") as tmp:
        assert Path(tmp).parent == d.parent and not d.exists()
        _fill(tmp, **{"top.v": "v1", "top.json": "{}"})
    marker = json.loads((d / MARKER).read_text())
    assert marker == {"stage": "gen", "files": ["top.json", "top.v"]} and output_stage(d) == "gen"
    with atomic_directory(d, stage="gen") as tmp:  # its own earlier output: replaced as a whole
        _fill(tmp, **{"top.v": "v2"})
    assert sorted(p.name for p in d.iterdir()) == [MARKER, "top.v"] and (d / "top.v").read_text() == "v2"
    assert leftovers(tmp_path) == []


def test_atomic_directory_failure_keeps_previous_output(tmp_path):
    d = tmp_path / "rtl"
    with atomic_directory(d, stage="gen") as tmp:
        _fill(tmp, **{"top.v": "good"})
    before = tree_state(d)
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_directory(d, stage="gen") as tmp:
            _fill(tmp, **{"top.v": "half"})
            raise RuntimeError("half-way")
    assert tree_state(d) == before and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "case, reason",
    [
        ("file", "is a file"),
        ("user", "files that no lutmac stage wrote"),
        ("other-stage", "the output of `export`"),
        ("user-file-added", "also holds notes.txt"),
        ("legacy-user-file", "also holds notes.txt"),
        ("symlink", "symbolic link"),
        ("input", "input folder"),
        ("holds-input", "input folder"),
        ("inside-input", "lies inside the input folder"),
        ("parent-file", "a parent of it"),
        ("nested-stage-output", "also holds"),
    ],
)
def test_atomic_directory_refusals_touch_nothing(tmp_path, case, reason):
    root = tmp_path / "root"
    root.mkdir()
    target, inputs = root / "rtl", ()
    if case == "file":
        target.write_text("data")
    elif case == "user":
        target.mkdir()
        (target / "thesis.tex").write_text("years of work")
    elif case == "other-stage":
        with atomic_directory(target, stage="export") as tmp:
            _fill(tmp, **{"manifest.json": "{}"})
    elif case == "user-file-added":
        with atomic_directory(target, stage="gen") as tmp:
            _fill(tmp, **{"top.v": "v"})
        (target / "notes.txt").write_text("mine")
    elif case == "legacy-user-file":  # written before markers: top.json says gen, notes.txt is not gen's
        target.mkdir()
        _fill(target, **{"top.v": "v", "top.json": "{}", "notes.txt": "mine"})
    elif case == "symlink":
        (root / "elsewhere").mkdir()
        target.symlink_to(root / "elsewhere")
    elif case == "input":
        target.mkdir()
        inputs = (target,)
    elif case == "holds-input":
        (target / "export").mkdir(parents=True)
        inputs = (target / "export",)
    elif case == "inside-input":
        inputs = (root,)
    elif case == "parent-file":
        (root / "afile").write_text("data")
        target = root / "afile" / "rtl"
    elif case == "nested-stage-output":  # a legacy gen folder someone ran sim into
        target.mkdir()
        _fill(target, **{"top.v": "v", "top.json": "{}"})
        (target / "sim").mkdir()
        _fill(target / "sim", **{"results.json": "{}"})
    before = tree_state(tmp_path)
    with pytest.raises(OutputError, match=re.escape(reason)) as e:
        with atomic_directory(target, stage="gen", inputs=inputs) as tmp:
            _fill(tmp, **{"top.v": "new"})
    assert str(target) in str(e.value) and "\n" not in str(e.value)
    assert_untouched(tmp_path, before)


def test_legacy_output_with_only_its_files_is_replaced(tmp_path):
    d = tmp_path / "export"
    d.mkdir()
    _fill(d, **{"manifest.json": "{}", "fc0.weights": "w", "fc0.thresholds": "t", "test-images.idx.gz": "i"})
    with atomic_directory(d, stage="export") as tmp:
        _fill(tmp, **{"manifest.json": '{"v": 2}'})
    assert (d / "manifest.json").read_text() == '{"v": 2}' and not (d / "fc0.weights").exists()


def test_empty_folder_and_current_folder(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with atomic_directory(tmp_path / "empty", stage="gen") as tmp:
        _fill(tmp, **{"top.v": "v"})
    assert (tmp_path / "empty" / "top.v").exists()
    # the current folder (or one holding it) is never replaced, even when it is an earlier output
    monkeypatch.chdir(tmp_path / "empty")
    before = tree_state(tmp_path)
    for p in (".", "..", str(tmp_path / "empty")):
        with pytest.raises(OutputError, match="current folder"):
            check_output_dir(p, stage="gen")
        with pytest.raises(OutputError):
            with atomic_directory(p, stage="gen") as tmp:
                _fill(tmp, **{"top.v": "v2"})
    assert_untouched(tmp_path, before)


def test_read_only_parent_is_refused_before_any_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes (the mocked test below covers it)")
        with pytest.raises(OutputError, match="permission denied"):
            check_output_dir(ro / "rtl", stage="gen")
    finally:
        ro.chmod(0o755)


def test_mkdtemp_permission_error_leaves_everything(tmp_path):
    """A folder the stage cannot write into (what a read-only parent does to a non-root user)."""
    d = tmp_path / "rtl"
    with atomic_directory(d, stage="gen") as tmp:
        _fill(tmp, **{"top.v": "good"})
    before = tree_state(tmp_path)
    denied = PermissionError(errno.EACCES, "Permission denied")
    with mock.patch("tempfile.mkdtemp", side_effect=denied):
        with pytest.raises(OutputError, match=r"cannot write into the folder \(Permission denied\)") as e:
            with atomic_directory(d, stage="gen") as tmp:
                pytest.fail("the block must not run")
    assert str(tmp_path) in str(e.value)
    assert_untouched(tmp_path, before)
    with mock.patch("tempfile.mkstemp", side_effect=denied):
        with pytest.raises(OutputError, match="Permission denied"):
            atomic_write_text(tmp_path / "x.json", "{}")
    assert_untouched(tmp_path, before)


def test_busy_folder_keeps_previous_output(tmp_path):
    """``os.replace`` failing (EBUSY: a mount point, a folder another process holds) leaves the old output as it
    was and no temporary folder."""
    d = tmp_path / "rtl"
    with atomic_directory(d, stage="gen") as tmp:
        _fill(tmp, **{"top.v": "good"})
    before = tree_state(d, times=False)
    busy = OSError(errno.EBUSY, "Device or resource busy")
    with mock.patch("os.replace", side_effect=busy):
        with pytest.raises(OutputError, match=r"cannot replace the folder \(Device or resource busy\)"):
            with atomic_directory(d, stage="gen") as tmp:
                _fill(tmp, **{"top.v": "new"})
    assert tree_state(d, times=False) == before and leftovers(tmp_path) == []
    # the second rename failing (the old output already moved aside) puts the old output back
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise busy
        return real(src, dst)

    with mock.patch("os.replace", side_effect=second_fails):
        with pytest.raises(OutputError, match="cannot replace the folder"):
            with atomic_directory(d, stage="gen") as tmp:
                _fill(tmp, **{"top.v": "new"})
    assert len(calls) == 3  # aside, (failed) into place, back
    assert tree_state(d, times=False) == before and leftovers(tmp_path) == []


def test_umask_is_read_without_changing_it(tmp_path):
    """Setting the umask to read it, even for an instant, gives files other threads create meanwhile (the report's
    parallel syntheses) the wrong permissions: on Linux it is read from /proc, never set."""
    from common import files

    old = os.umask(0o027)
    try:
        if Path("/proc/self/status").exists():
            with mock.patch("os.umask", side_effect=AssertionError("os.umask called")):
                assert files._umask() == 0o027
        assert files._umask() == 0o027
        with atomic_directory(tmp_path / "d", stage="gen") as tmp:
            _fill(tmp, **{"top.v": "v"})
        assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o750
        assert stat.S_IMODE((tmp_path / "d" / "top.v").stat().st_mode) == 0o640
        atomic_write_text(tmp_path / "f.txt", "x")
        assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o640
    finally:
        os.umask(old)


# -- common.files: claim_directory, check_output_dir, atomic_path ----------------------------------------------------


def test_claim_directory(tmp_path):
    d = claim_directory(tmp_path / "sim", stage="sim")
    assert json.loads((d / MARKER).read_text()) == {"stage": "sim", "files": None}
    (d / "build").mkdir()
    (d / "results.json").write_text("{}")
    assert claim_directory(d, stage="sim") == d  # its own cache: reused in place
    (d / "my-notes.txt").write_text("kept")  # filled in place: a user's file there is not at risk
    claim_directory(d, stage="sim")
    assert (d / "my-notes.txt").read_text() == "kept"
    with atomic_directory(tmp_path / "export", stage="export") as tmp:
        _fill(tmp, **{"manifest.json": "{}"})
    (tmp_path / "afile").write_text("x")
    before = tree_state(tmp_path)
    for target, inputs, reason in [
        (tmp_path / "export", (), "the output of `export`"),
        (tmp_path / "afile", (), "is a file"),
        (tmp_path / "afile" / "sim", (), "a parent of it"),
        (tmp_path, (tmp_path / "export",), "input folder"),
        (tmp_path / "export" / "sim", (tmp_path / "export",), "inside the input"),
    ]:
        with pytest.raises(OutputError, match=re.escape(reason)):
            claim_directory(target, stage="sim", inputs=inputs)
    assert_untouched(tmp_path, before)
    # a claimed folder never takes another stage's output in (a legacy train folder inside it)
    (d / "train").mkdir()
    (d / "train" / "metrics.json").write_text("{}")
    with pytest.raises(OutputError, match="also holds train"):
        claim_directory(d, stage="sim")


def test_check_output_dir_accepts_new_and_reports_stage(tmp_path):
    check_output_dir(tmp_path / "new" / "deeper", stage="gen")
    assert not (tmp_path / "new").exists()
    legacy = tmp_path / "synth"
    legacy.mkdir()
    (legacy / "utilization.json").write_text("{}")
    assert output_stage(legacy) == "synth" and output_stage(tmp_path) is None
    check_output_dir(legacy, stage="synth")
    with pytest.raises(OutputError, match="the output of `synth`"):
        check_output_dir(legacy, stage="gen")


def test_atomic_path(tmp_path):
    f = tmp_path / "sub" / "a.json"
    with atomic_path(f) as tmp:
        assert tmp.parent == f.parent and tmp.name.startswith(".a.json.") and tmp.name.endswith(".tmp")
        tmp.write_text("1")
    assert f.read_text() == "1" and stat.S_IMODE(f.stat().st_mode) == 0o666 & ~_current_umask()
    with pytest.raises(ZeroDivisionError):
        with atomic_path(f) as tmp:
            tmp.write_text("2")
            raise ZeroDivisionError
    assert f.read_text() == "1" and leftovers(tmp_path) == []
    with pytest.raises(OutputError, match="is a folder"):
        with atomic_path(tmp_path / "sub"):
            pass
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="a parent of it is a file"):
        with atomic_path(tmp_path / "afile" / "b.json"):
            pass
    with pytest.raises(OutputError, match="a parent of it is a file"):
        with atomic_path(tmp_path / "afile" / "deeper" / "b.json"):
            pass
    assert (tmp_path / "afile").read_text() == "x" and leftovers(tmp_path) == []


def _current_umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


# -- every stage's command line, pointed at the wrong place ----------------------------------------------------------


def _targets(out, tmp_path, names):
    """Wrong ``-o`` values: OUT itself, folders inside it, an existing file, a path under a file."""
    (tmp_path / "afile").write_text("not a folder\n")
    table = {
        "OUT": (out, "input folder"),
        "afile": (tmp_path / "afile", "is a file"),
        "afile/x": (tmp_path / "afile" / "x", "a parent of it"),
    }
    for n in names:
        if n not in table:
            table[n] = (out / n, "input folder")
    return [table[n] for n in ("OUT", *names, "afile", "afile/x") if n in table]


def _refusals(tmp_path, out, args_for, names, *, stage_name, env=None, skip=()):
    for target, reason in _targets(out, tmp_path, names):
        if str(target.relative_to(tmp_path)) in skip:
            continue
        before = tree_state(tmp_path)
        r = stage(*args_for(target), env=env)
        line = assert_refused(r, target, reason)
        assert line.startswith(f"{stage_name}: error: "), line
        assert_untouched(tmp_path, before)


def test_gen_refuses_wrong_outputs(out, tmp_path):
    exp = out / "export"
    _refusals(
        tmp_path,
        out,
        lambda o: ("hw", "gen", "--export", exp, "--pe", 2, "--simd", 8, "-o", o),
        ["export"],
        stage_name="hw",
    )
    # a folder of other stages' outputs: train is not an input of gen, but it is export's output
    before = tree_state(tmp_path)
    r = stage("hw", "gen", "--export", exp, "-o", out / "train")
    assert_refused(r, out / "train", "the output of `train`")
    assert_untouched(tmp_path, before)
    # `-o .` in a folder of the user's files
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("years of work")
    before = tree_state(tmp_path)
    r = stage("hw", "gen", "--export", exp, "-o", ".", cwd=work)
    assert_refused(r, ".", "current folder")
    assert_untouched(tmp_path, before)


def test_gen_refuses_read_only_parent(out, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes (test_mkdtemp_permission_error_* covers it)")
        before = tree_state(tmp_path)
        r = stage("hw", "gen", "--export", out / "export", "-o", ro / "rtl")
        assert_refused(r, ro / "rtl", "permission denied")
        assert_untouched(tmp_path, before)
    finally:
        ro.chmod(0o755)


def test_gen_reruns_onto_its_own_output_and_refuses_a_user_file(out, tmp_path):
    rtl = out / "rtl"
    first = json.loads((rtl / "top.json").read_text())
    r = stage("hw", "gen", "--export", out / "export", "--pe", 1, "--simd", 4, "-o", rtl)
    assert r.returncode == 0, r.stderr
    assert "LUTs est. for --target portable" in r.stdout
    top = json.loads((rtl / "top.json").read_text())
    assert top["layers"][0]["pe"] == 1 and top["fold_bound_cycles"] != first["fold_bound_cycles"]
    assert json.loads((rtl / MARKER).read_text())["stage"] == "gen" and leftovers(tmp_path) == []
    (rtl / "notes.txt").write_text("mine")
    before = tree_state(tmp_path)
    r = stage("hw", "gen", "--export", out / "export", "-o", rtl)
    assert_refused(r, rtl, "also holds notes.txt")
    assert_untouched(tmp_path, before)


def test_export_refuses_wrong_outputs(out, tmp_path):
    """A real checkpoint (the tiny network's: ``digits_export``'s would cost a 60-epoch training when this file runs
    alone) exported onto OUT, its own input folder or a file. (export imports torch before its check: 3 runs.)"""
    ck = out / "train" / "model.pt"
    _refusals(
        tmp_path,
        out,
        lambda o: ("export", "--checkpoint", ck, "-o", o),
        ["train"],
        stage_name="export",
        skip=("afile/x",),
    )


def test_sim_refuses_wrong_outputs(out, tmp_path):
    exp, rtl = out / "export", out / "rtl"
    _refusals(
        tmp_path,
        out,
        lambda o: ("sim", "--export", exp, "--rtl", rtl, "--n", 2, "--sim", "icarus", "-o", o),
        ["export", "rtl"],
        stage_name="sim",
    )


def test_synth_refuses_wrong_outputs(out, tmp_path):
    rtl = out / "rtl"
    _refusals(tmp_path, out, lambda o: ("boards", "synth", "--rtl", rtl, "-o", o), ["rtl"], stage_name="boards")
    before = tree_state(tmp_path)
    r = stage("boards", "synth", "--rtl", rtl, "-o", out / "export")
    assert_refused(r, out / "export", "the output of `export`")
    assert_untouched(tmp_path, before)


def test_report_refuses_wrong_outputs(out, tmp_path):
    exp = out / "export"
    _refusals(
        tmp_path,
        out,
        lambda o: ("boards", "report", "--export", exp, "--pe", "1", "--simd", "8", "-o", o),
        ["export"],
        stage_name="boards",
    )


def _no_tools(tmp_path):
    """Environment whose yosys/nextpnr/ecppack/vivado only leave a trace that they ran."""
    fake = tmp_path / "fake-tool"
    fake.write_text(f"#!/bin/sh\ntouch {tmp_path / 'a-tool-ran'}\nexit 1\n")
    fake.chmod(0o755)
    return {
        "YOSYS": str(fake),
        "NEXTPNR_ECP5": str(fake),
        "ECPPACK": str(fake),
        "AMARANTH_ENV_VIVADO": "",
    }, tmp_path / "a-tool-ran"


def test_pnr_refuses_wrong_outputs_before_any_tool(out, tmp_path):
    env, ran = _no_tools(tmp_path)
    rtl = out / "rtl"
    for scope in ("board", "network"):
        _refusals(
            tmp_path,
            out,
            lambda o: ("boards", "pnr", "--rtl", rtl, "--board", "ulx3s_85f", "--scope", scope, "-o", o),
            ["rtl"],
            stage_name="boards",
            env=env,
        )
    assert not ran.exists()
    # an earlier board build with the user's file in it
    pnr = out / "pnr" / "ulx3s_85f"
    with atomic_directory(pnr, stage="pnr") as tmp:
        _fill(tmp, **{"summary.json": "{}", "lutmac.bit": "bits"})
    (pnr / "board-photo.jpg").write_text("jpeg")
    before = tree_state(tmp_path)
    r = stage("boards", "pnr", "--rtl", rtl, "--board", "ulx3s_85f", "-o", pnr, env=env)
    assert_refused(r, pnr, "also holds board-photo.jpg")
    assert_untouched(tmp_path, before)
    assert not ran.exists()


def test_build_refuses_wrong_outputs(out, tmp_path):
    env, ran = _no_tools(tmp_path)
    rtl = out / "rtl"
    _refusals(
        tmp_path,
        out,
        lambda o: ("boards", "build", "--rtl", rtl, "--board", "arty_a7_35", "-o", o),
        ["rtl"],
        stage_name="boards",
        env=env,
    )
    assert not ran.exists()


@pytest.mark.parametrize("mask, dmode, fmode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)], ids=["022", "077"])
def test_new_outputs_follow_the_umask(out, tmp_path, mask, dmode, fmode):
    rtl = tmp_path / "new" / "rtl"
    r = stage("hw", "gen", "--export", out / "export", "--pe", 2, "--simd", 8, "-o", rtl, umask=mask)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(rtl.stat().st_mode) == dmode
    names = sorted(p.name for p in rtl.iterdir())
    assert names == sorted([MARKER, "top.json", "top.v"])
    for p in rtl.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == fmode, p


# -- flash --dry-run -------------------------------------------------------------------------------------------------


def test_flash_dry_run_needs_the_bitstream(tmp_path):
    for board_name, path, make in (
        ("ulx3s_85f", "pnr/ulx3s_85f/lutmac.bit", "make pnr BOARD=ulx3s_85f"),
        ("arty_a7_35", "build/arty_a7_35/vivado/lutmac.bit", "make build BOARD=arty_a7_35"),
    ):
        r = stage("boards", "flash", "--board", board_name, "--dir", tmp_path, "--dry-run")
        assert_refused(r, tmp_path / path, "no bitstream", make)
        assert r.stdout == ""
    bit = tmp_path / "pnr" / "ulx3s_85f" / "lutmac.bit"
    bit.parent.mkdir(parents=True)
    bit.write_bytes(b"\0")
    r = stage("boards", "flash", "--board", "ulx3s_85f", "--dir", tmp_path, "--dry-run")
    assert r.returncode == 0 and r.stdout.strip() == f"openFPGALoader -b ulx3s -m {bit}"


# -- the LUT estimate and the boards' fit check ------------------------------------------------------------------------


def _layer(name, n_in, n_out, in_bits, acc_bits, abits, is_output):
    return SimpleNamespace(
        name=name,
        in_features=n_in,
        out_features=n_out,
        in_bits=in_bits,
        acc_bits=acc_bits,
        abits=abits,
        is_output=is_output,
    )


def test_estimate_luts_per_target():
    from hw import HardwareError
    from hw.folding import estimate_luts

    layers = [_layer("fc0", 784, 256, 8, 19, 8, False), _layer("fc1", 256, 10, 8, 18, 8, True)]
    folding = [SimpleNamespace(pe=16, simd=64, hardwired=False), SimpleNamespace(pe=10, simd=64, hardwired=False)]
    xc7, portable = estimate_luts(layers, folding, "xc7"), estimate_luts(layers, folding, "portable")
    # the trees (PE x SIMD lanes of 8 bits): 0.78 * 8 + 1.67 = 7.91 LUT/lane for the Xilinx netlist, 16.3 portable
    trees, lane = 16 * 64 + 10 * 64, 0.78 * 8 + 1.67
    assert abs(portable - xc7 - trees * (16.3 - lane)) <= 1  # each total rounded once
    assert estimate_luts(layers, folding, "xcup") == estimate_luts(layers, folding, "xcu") == xc7
    # input buffers: rows in distributed RAM (32 and 8 rows: one RAM32M deep) or SF:1 register multiplexers
    rams = 2 * 64 * 8 * (1.2 + 4 / 6)
    assert xc7 == round(trees * lane + rams + 16 * 8 * 19 // 2)
    mux = 64 * 8 * 7 + 64 * 8 * 2
    assert estimate_luts(layers, folding, "xc7", buffers="registers") == round(trees * lane + mux + 16 * 8 * 19 // 2)
    with pytest.raises(HardwareError, match="no LUT estimate for target 'ice40'"):
        estimate_luts(layers, folding, "ice40")
    # a hard-wired output layer: shared-sum matrices, 0.22 * in_bits + 0.52 LUT per MAC in portable RTL, 0.155 *
    # in_bits + 0.37 with the Xilinx ternary adders
    wired = folding[:1] + [SimpleNamespace(pe=10, simd=256, hardwired=True)]
    for target, (a, b) in (("xc7", (0.155, 0.37)), ("portable", (0.22, 0.52))):
        added = estimate_luts(layers, wired, target) - estimate_luts(layers[:1], folding[:1], target)
        assert abs(added - (10 * 256 * (a * 8 + b) + 256 * 8 * 1)) <= 1


def test_gen_records_the_estimate_for_its_target(tiny_export, tiny_rtl, tmp_path):
    from hw.folding import estimate_luts, resolve_folding
    from hw.gen import generate, load_export

    _, layers = load_export(tiny_export)
    folding = resolve_folding(layers, pe=2, simd=8)
    top = json.loads((tiny_rtl / "top.json").read_text())
    assert top["tree_target"] == "portable" and top["estimated_luts"] == estimate_luts(layers, folding, "portable")
    d = generate(tiny_export, tmp_path / "xc7", pe=2, simd=8, target="xc7", warn=lambda s: None)
    assert d["tree_target"] == "xc7" and d["estimated_luts"] == estimate_luts(layers, folding, "xc7")
    assert d["estimated_luts"] < top["estimated_luts"]


def _claiming(rtl, tmp_path, luts):
    """A copy of ``rtl`` whose top.json claims ``luts`` estimated LUTs."""
    big = tmp_path / "big" / "rtl"
    shutil.copytree(rtl, big)
    top = json.loads((big / "top.json").read_text())
    top["estimated_luts"] = luts
    (big / "top.json").write_text(json.dumps(top))
    return big


def test_fit_check_refuses_before_any_tool(tiny_rtl, tmp_path, monkeypatch):
    from boards.platforms import ECP5_LUT4_PER_LUT6, board, estimated_fit_error

    env, ran = _no_tools(tmp_path)
    big = _claiming(tiny_rtl, tmp_path, 1_000_000)
    need = round(1_000_000 * ECP5_LUT4_PER_LUT6)
    before = tree_state(tmp_path)
    for scope in ("board", "network"):
        r = stage(
            "boards", "pnr", "--rtl", big, "--board", "ulx3s_85f", "--scope", scope, "-o", tmp_path / "pnr", env=env
        )
        assert_refused(
            r,
            big / "top.json",
            "ulx3s_85f",
            f"~{need} LUT4",
            "has 83640 LUT4 cells",
            f"({need - 83640} too many",
            "--force",
        )
    r = stage("boards", "build", "--rtl", big, "--board", "arty_a7_35", "-o", tmp_path / "b", env=env)
    assert_refused(
        r, big / "top.json", "arty_a7_35", "~1000000 LUTs", "has 20800 LUTs", "(979200 too many, 4808%)", "--force"
    )
    assert_untouched(tmp_path, before)
    assert not ran.exists()
    # fits: no complaint; no estimate (older top.json): no complaint
    top = json.loads((tiny_rtl / "top.json").read_text())
    assert estimated_fit_error(board("ulx3s_25f"), tiny_rtl, top) is None
    assert estimated_fit_error(board("ulx3s_25f"), tiny_rtl, {**top, "estimated_luts": None}) is None
    over = int(24288 / ECP5_LUT4_PER_LUT6) + 10
    assert "too many" in estimated_fit_error(board("ulx3s_25f"), tiny_rtl, {**top, "estimated_luts": over})


def test_fit_check_force_runs_the_flow(tiny_rtl, tmp_path):
    env, ran = _no_tools(tmp_path)
    big = _claiming(tiny_rtl, tmp_path, 1_000_000)
    # Xilinx without Vivado: --force writes the plan (amaranth's own yosys elaborates the board top: the real one)
    r = stage(
        "boards",
        "build",
        "--rtl",
        big,
        "--board",
        "arty_a7_35",
        "--force",
        "-o",
        tmp_path / "b",
        env={"AMARANTH_ENV_VIVADO": ""},
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "plan.zip").exists()
    # ECP5: --force goes on to the tools (the network alone: a fake yosys that fails at once)
    r = stage(
        "boards",
        "pnr",
        "--rtl",
        big,
        "--board",
        "ulx3s_85f",
        "--scope",
        "network",
        "--force",
        "-o",
        tmp_path / "p",
        env=env,
    )
    assert r.returncode == 2 and "the ECP5 flow failed" in r.stderr and ran.exists()
    assert not (tmp_path / "p").exists()
