"""Every command's --help: a description, help text on every option, ``choices`` where the values are fixed, and a
bad value refused in one line with exit 2."""

import argparse
import importlib
import subprocess
import sys

import pytest

# (module whose main() builds the parser, argv that selects the command) -> its subcommands, if it has any
COMMANDS = {
    ("train.__main__", ()): set(),
    ("train.plots", ()): set(),
    ("export.__main__", ()): set(),
    ("export.__main__", ("check",)): set(),
    ("export.__main__", ("qonnx",)): set(),
    ("export.__main__", ("from-qonnx",)): set(),
    ("hw.__main__", ()): {"gen", "fold", "pe", "matrix"},
    ("sim.__main__", ()): set(),
    ("boards.__main__", ()): {"synth", "report", "pnr", "build", "ip", "flash", "infer"},
    ("bench.__main__", ()): set(),
}

# options whose values are a fixed set: (module, argv, subcommand, option) -> the set
FIXED = {
    ("train.__main__", (), None, "--binarize"): {"det", "stoch"},
    ("train.__main__", (), None, "--loss"): {"hinge", "xent"},
    ("export.__main__", (), None, "--thresholds"): {"auto", "table", "progression"},
    ("hw.__main__", (), "gen", "--target"): {"portable", "xc7", "xcu", "xcup"},
    ("hw.__main__", (), "gen", "--buffers"): {"auto", "registers"},
    ("hw.__main__", (), "fold", "--target"): {"portable", "xc7", "xcu", "xcup"},
    ("hw.__main__", (), "pe", "--family"): {"xc7", "xcu", "xcup"},
    ("sim.__main__", (), None, "--sim"): {"verilator", "icarus"},
    ("boards.__main__", (), "synth", "--family"): {"xc7", "xcu", "xcup"},
    ("boards.__main__", (), "report", "--family"): {"xc7", "xcu", "xcup"},
    ("boards.__main__", (), "report", "--target"): {"portable", "xc7", "xcu", "xcup"},
    ("boards.__main__", (), "report", "--executor"): {"local", "dask"},
    ("boards.__main__", (), "pnr", "--scope"): {"board", "network"},
}

# options that take open values (a name or a path; a preset or a grammar; a device index): no choices there
OPEN = [
    ("train.__main__", (), None, "--dataset"),
    ("train.__main__", (), None, "--arch"),
    ("train.__main__", (), None, "--device"),
    ("export.__main__", ("from-qonnx",), None, "--dataset"),
    ("boards.__main__", (), "pnr", "--board"),
]


class _Parsed(Exception):
    def __init__(self, parser):
        self.parser = parser


def _parser(module, argv, monkeypatch):
    """The parser ``module.main(argv)`` builds (caught at its parse_args, before any work)."""

    def capture(self, args=None, namespace=None):
        raise _Parsed(self)

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", capture)
        with pytest.raises(_Parsed) as e:
            importlib.import_module(module).main(list(argv))
    return e.value.parser


def _subcommands(parser):
    return {
        name: sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    }


def help_problems(parser):
    """What ``parser`` and its subcommands lack: a description, a help line per subcommand, help on every option
    (help=argparse.SUPPRESS, a deliberately hidden option, counts as help)."""
    problems = [] if (parser.description or "").strip() else [f"{parser.prog}: no description"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            lines = {a.dest: a.help for a in action._choices_actions}
            problems += [f"{parser.prog} {n}: no help line" for n in action.choices if not (lines.get(n) or "").strip()]
            continue
        if not (action.help or "").strip():
            problems.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}: no help")
    for sub in _subcommands(parser).values():
        problems += help_problems(sub)
    return problems


def test_help_problems_finds_an_option_without_help():
    p = argparse.ArgumentParser(prog="x", description="d")
    p.add_argument("--fine", help="has help")
    p.add_argument("--bare")
    sub = p.add_subparsers()
    s = sub.add_parser("s", help="a subcommand")
    s.add_argument("target")
    assert help_problems(p) == ["x --bare: no help", "x s: no description", "x s target: no help"]


@pytest.mark.parametrize("module, argv", list(COMMANDS), ids=[" ".join((m, *a)) for m, a in COMMANDS])
def test_every_option_has_help(module, argv, monkeypatch):
    parser = _parser(module, argv, monkeypatch)
    assert parser.prog == " ".join(["python", "-m", module.removesuffix(".__main__"), *argv])
    assert set(_subcommands(parser)) == COMMANDS[(module, argv)]
    assert help_problems(parser) == []


@pytest.mark.parametrize("module, argv", list(COMMANDS), ids=[" ".join((m, *a)) for m, a in COMMANDS])
def test_help_prints_the_description(module, argv, monkeypatch, capsys):
    parser = _parser(module, argv, monkeypatch)
    for path in [()] + [(name,) for name in sorted(_subcommands(parser))]:
        want = (_subcommands(parser)[path[0]] if path else parser).description
        with pytest.raises(SystemExit) as e:
            importlib.import_module(module).main([*argv, *path, "--help"])
        out = "".join(capsys.readouterr().out.split())  # argparse re-wraps it, also at hyphens
        assert e.value.code == 0 and "".join(want.split()) in out, path


def _option(module, argv, sub, option, monkeypatch):
    parser = _parser(module, argv, monkeypatch)
    parser = _subcommands(parser)[sub] if sub else parser
    return next(a for a in parser._actions if option in a.option_strings)


@pytest.mark.parametrize("key", list(FIXED), ids=[" ".join((k[0], *k[1], k[2] or "", k[3])) for k in FIXED])
def test_fixed_values_are_choices(key, monkeypatch):
    action = _option(*key, monkeypatch)
    assert action.choices is not None and set(action.choices) == FIXED[key]
    assert action.default is None or action.default in action.choices


@pytest.mark.parametrize("key", OPEN, ids=[" ".join((k[0], *k[1], k[2] or "", k[3])) for k in OPEN])
def test_open_values_have_no_choices(key, monkeypatch):
    assert _option(*key, monkeypatch).choices is None


@pytest.mark.parametrize(
    "argv, word",
    [
        (["train", "--binarize", "sign", "-o", "x"], "'sign'"),
        (["hw", "gen", "--export", "e", "--target", "xc9", "-o", "x"], "'xc9'"),
        (["boards", "report", "--export", "e", "--executor", "slurm", "-o", "x"], "'slurm'"),
        (["bench", "--only", "nosuch"], "'nosuch'"),
        (["sim", "--export", "e"], "--rtl"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(argv, word, tmp_path):
    r = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and word in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--help for usage" in r.stderr and not r.stdout and not (tmp_path / "x").exists()
