"""Atomic output: a reader never sees a half-written artifact, and no output folder replaces anything but an earlier
output of the same stage.

Every stage that writes a folder writes it through :func:`atomic_directory` (or claims it with
:func:`claim_directory` when it fills it in place, like the simulator's build cache). Such a folder carries a marker,
``.lutmac-output.json``, naming the stage and the entries it wrote. An existing target is replaced only when its marker
(or, for folders written before markers existed, its signature file) says it is this stage's output and it holds
nothing else; a file, the stage's own input, a folder holding another stage's output or anything a user put there is
refused with one line, and nothing is touched.
"""

import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from . import LutmacError

__all__ = [
    "OutputError",
    "MARKER",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_path",
    "atomic_directory",
    "claim_directory",
    "check_output_dir",
    "output_stage",
]

MARKER = ".lutmac-output.json"

# Folders written before markers existed, recognised by the file only that stage writes.
_SIGNATURES = {
    "train": ("metrics.json", "checkpoint.pt", "model.pt"),
    "export": ("manifest.json",),
    "gen": ("top.json",),
    "sim": ("results.json",),
    "synth": ("utilization.json",),
    "report": ("sweep.csv",),
    "build": ("plan.zip",),
    "pnr": ("summary.json",),
}

# Everything those stages wrote into a folder they replace as a whole, before markers listed it: a legacy folder
# holding anything else (a user's file) is refused, not replaced. Stages that fill their folder in place (train, sim)
# never replace it and are not listed.
_LEGACY_FILES = {
    "export": ("manifest.json", "*.weights", "*.thresholds", "test-images.idx.gz", "test-labels.idx.gz"),
    "gen": ("top.v", "top.json", "sim_models.v"),
    "synth": ("utilization.json", "cells.json", "yosys.log", "ltp.txt", "stat.json"),
    "report": ("sweep.csv", "sweep.json", "sweep.png"),
    "pnr": ("summary.json", "lutmac.bit", "lutmac.log", "lutmac.tim", "lutmac.rpt"),
    "build": ("summary.json", "plan.zip", "vivado"),
}


class OutputError(LutmacError):
    """An output path that cannot or must not be written."""


_umask_lock = threading.Lock()


def _umask():
    """The process umask, read without changing it where the OS allows (os.umask is the only portable reader, and
    setting it even briefly would give files other threads create meanwhile the wrong permissions)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _oserror(path, e, what):
    return OutputError(f"{path}: cannot {what} ({e.strerror or e})")


def _mkdir_parent(path):
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{path}: a parent of it is a file, not a folder") from None
    except OSError as e:
        raise _oserror(parent, e, "create the folder") from None
    if not parent.is_dir():
        raise OutputError(f"{path}: a parent of it is a file, not a folder")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets the permissions any new file would (``0666`` less the umask), not ``mkstemp``'s ``0600``.
    """
    path = Path(path)
    _mkdir_parent(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, not a file")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _oserror(path.parent, e, "write into the folder") from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _oserror(path, e, "replace the file") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def output_stage(directory):
    """The stage whose output ``directory`` is (from its marker, else its signature file), or None."""
    directory = Path(directory)
    try:
        marker = json.loads((directory / MARKER).read_text())
        if isinstance(marker, dict) and isinstance(marker.get("stage"), str):
            return marker["stage"]
    except (OSError, ValueError):
        pass
    for stage, names in _SIGNATURES.items():
        if any((directory / n).is_file() for n in names):
            return stage
    return None


def _marker_files(directory):
    try:
        files = json.loads((Path(directory) / MARKER).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return set(files) if isinstance(files, list) else None


def check_output_dir(path, *, stage, inputs=(), in_place=False):
    """Raise :class:`OutputError` unless ``path`` may become (or be replaced by) ``stage``'s output.

    ``in_place``: the stage fills the folder in place (:func:`claim_directory`) instead of replacing it.
    """
    try:
        _check_output_dir(Path(path), stage, inputs, in_place)
    except OSError as e:  # e.g. a parent without search permission: say so, never a traceback
        raise _oserror(path, e, "inspect the output folder") from None


def _check_output_dir(path, stage, inputs, in_place):
    where = path.resolve()
    for inp in inputs:
        inp = Path(inp).resolve()
        if where == inp or where in inp.parents:
            raise OutputError(f"{path}: is or holds the input folder {inp}; choose another output folder")
        if inp in where.parents:
            raise OutputError(f"{path}: lies inside the input folder {inp}; choose another output folder")
    if path.is_symlink():
        raise OutputError(f"{path}: is a symbolic link, not an output folder; choose another -o")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file, not an output folder; choose another -o")
    if not (in_place and path.exists()):
        _check_parent(path)  # where the temporary folder (or the new folder) goes: refused now, not after the work
    if not path.exists():
        return
    cwd = Path.cwd().resolve()
    if not in_place and (where == cwd or where in cwd.parents):
        raise OutputError(f"{path}: is or holds the current folder, which the output would replace; choose another -o")
    try:
        entries = {p.name for p in path.iterdir()}
    except OSError as e:
        raise _oserror(path, e, "list the folder") from None
    if not entries:
        return
    owner = output_stage(path)
    if owner != stage:
        what = f"the output of `{owner}`" if owner else "files that no lutmac stage wrote"
        raise OutputError(
            f"{path}: holds {what}, not an earlier {stage} output; refusing to replace it "
            f"(choose another -o, or remove it yourself)"
        )
    listed = _marker_files(path)
    if listed is not None:
        foreign = sorted(entries - listed - {MARKER})
    elif not in_place and stage in _LEGACY_FILES:
        # written before markers: only the names this stage wrote then may be replaced
        foreign = sorted(
            n for n in entries - {MARKER} if not any(fnmatch.fnmatchcase(n, pat) for pat in _LEGACY_FILES[stage])
        )
    else:
        # filled in place: whatever else is there stays, but not another stage's output
        foreign = sorted(n for n in entries if (path / n).is_dir() and output_stage(path / n) not in (None, stage))
    if foreign:
        raise OutputError(
            f"{path}: an earlier {stage} output, but it also holds {', '.join(foreign[:3])}"
            f"{' ...' if len(foreign) > 3 else ''} that {stage} did not write; refusing to replace it"
        )


def _check_parent(path):
    """Refuse a path whose nearest existing ancestor is a file or not writable."""
    anc = Path(os.path.abspath(path)).parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{path}: a parent of it ({anc}) is a file, not a folder; choose another -o")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write into the folder {anc} (permission denied); choose another -o")


def _write_marker(directory, stage, files):
    (Path(directory) / MARKER).write_text(json.dumps({"stage": stage, "files": files}) + "\n")


@contextlib.contextmanager
def atomic_directory(path, *, stage, inputs=()):
    """Yield a fresh temporary folder; it replaces ``path`` as a whole only if the block succeeds.

    A stage that fails part-way leaves the previous output exactly as it was. ``path`` is refused before anything
    is written (:class:`OutputError`) when it is a file, is or lies inside one of ``inputs``, or holds anything but an
    earlier output of ``stage``.
    """
    check_output_dir(path, stage=stage, inputs=inputs)
    path = Path(os.path.abspath(path))  # `.`/`..` have no name to put a temporary folder beside
    _mkdir_parent(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise _oserror(path.parent, e, "write into the folder") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        _write_marker(tmp, stage, sorted(p.name for p in tmp.iterdir()))
        _swap(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap(tmp, path):
    old = None
    if path.exists():
        try:
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        except OSError as e:
            raise _oserror(path.parent, e, "write into the folder") from None
        try:
            os.replace(path, old)
        except OSError as e:
            old.rmdir()
            raise _oserror(path, e, "replace the folder") from None
    try:
        os.replace(tmp, path)
    except OSError as e:
        if old is not None:
            try:
                os.replace(old, path)
            except OSError:
                raise OutputError(
                    f"{path}: cannot replace the folder ({e.strerror or e}); the previous output is in {old}"
                ) from None
        raise _oserror(path, e, "replace the folder") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def claim_directory(path, *, stage, inputs=()):
    """Make ``path`` a folder that ``stage`` fills in place (a build cache), under the same rules as
    :func:`atomic_directory`; returns it."""
    path = Path(path)
    check_output_dir(path, stage=stage, inputs=inputs, in_place=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not (path / MARKER).exists():
            # in place: the stage owns whatever is in it (files: null)
            (path / MARKER).write_text(json.dumps({"stage": stage, "files": None}) + "\n")
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{path}: a parent of it is a file, not a folder") from None
    except OSError as e:
        raise _oserror(path, e, "create the folder") from None
    return path
