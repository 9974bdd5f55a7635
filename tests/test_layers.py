"""The import layers, read from the source (ast, every import including the
lazy ones inside functions and those under ``if TYPE_CHECKING``):

* **core**: every ``mecfed`` module except ``mecfed.cli`` and
  ``mecfed.testbed``. Imports no ``mef``, ``meo``, ``benchmarks``,
  ``mecfed.cli``, ``mecfed.testbed``.
* **mef** and **meo**: import core (and themselves) only, never each other,
  never the application layer.
* **app**: ``mecfed.cli``, ``mecfed.testbed``, ``benchmarks``. May import
  anything, but ``mecfed.cli`` imports servers and benchmarks only inside
  the subcommand that runs them (never at module level).
* The terminal UI and plotting extras (rich, matplotlib, numpy) belong to
  ``mecfed.cli`` and ``benchmarks``: no other module imports them.

And: no hand-written module (everything but the generated
``mecfed/v1/*_pb2*.py``) has more than 500 lines. Two subprocess checks make
sure the rules hold at run time: the daemons load no UI, plotting or
application code, and ``mecfed --help`` loads no server, no gRPC, no UI.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mecfed", "mef", "meo", "benchmarks")
GENERATED = re.compile(r"^mecfed/v1/[^/]*_pb2(_grpc)?\.pyi?$")
MAX_LINES = 500
APP_PACKAGES = ("mecfed.cli", "mecfed.testbed", "benchmarks")
EXTRAS = ("rich", "matplotlib", "numpy")
ALLOWED = {
    "core": {"core"},
    "mef": {"core", "mef"},
    "meo": {"core", "meo"},
    "app": {"core", "mef", "meo", "app"},
}


@dataclass(frozen=True)
class Import:
    importer: str  # module doing the import
    target: str  # imported module (as precise as the source says)
    line: int
    lazy: bool  # inside a function body
    type_only: bool  # under ``if TYPE_CHECKING``

    def __str__(self) -> str:
        where = "lazy " if self.lazy else ("type-only " if self.type_only else "")
        return f"{self.importer}:{self.line}: {where}import of {self.target}"


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer(module: str) -> str | None:
    """The layer of one of our modules; None for anything else (stdlib,
    third party)."""
    if any(_in(module, p) for p in APP_PACKAGES):
        return "app"
    top = module.split(".")[0]
    if top in ("mef", "meo"):
        return top
    if top == "mecfed":
        return "core"
    return None


@cache
def modules() -> dict[str, Path]:
    """Every module of our packages (``pkg.__init__`` as ``pkg``)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = importer.split(".")
    if path.name != "__init__.py":
        package.pop()
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def imports_of(importer: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    known = modules()
    out: list[Import] = []

    def visit(node: ast.AST, lazy: bool, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append(Import(importer, alias.name, node.lineno, lazy, type_only))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, path, node)
            for alias in node.names:
                # ``from mecfed import tracing`` imports the module mecfed.tracing.
                sub = f"{base}.{alias.name}"
                target = sub if sub in known else base
                out.append(Import(importer, target, node.lineno, lazy, type_only))
        for child in ast.iter_child_nodes(node):
            child_lazy = lazy or isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            child_type_only = type_only or (
                isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body
            )
            visit(child, child_lazy, child_type_only)

    visit(tree, False, False)
    return out


@cache
def all_imports() -> list[Import]:
    return [imp for name, path in modules().items() for imp in imports_of(name, path)]


def _report(violations: list[Import] | list[str]) -> str:
    return "\n".join(str(v) for v in violations)


def test_the_scanner_sees_our_modules() -> None:
    mods = modules()
    for name in ("mecfed.cli.main", "mecfed.testbed.plan", "mecfed.rpc.server", "benchmarks.cli"):
        assert name in mods, name
    lazy = [i for i in all_imports() if i.importer == "mecfed.cli.main" and i.lazy]
    assert any(i.target == "mecfed.testbed" for i in lazy), lazy


@pytest.mark.parametrize("importer_layer", ["core", "mef", "meo"])
def test_layers(importer_layer: str) -> None:
    """core imports only core; mef and meo only core and themselves."""
    bad = [
        i
        for i in all_imports()
        if layer(i.importer) == importer_layer
        and (target := layer(i.target)) is not None
        and target not in ALLOWED[importer_layer]
    ]
    assert not bad, f"{importer_layer} imports outside its layer:\n{_report(bad)}"


def test_cli_imports_servers_and_benchmarks_only_in_subcommands() -> None:
    bad = [
        i
        for i in all_imports()
        if _in(i.importer, "mecfed.cli")
        and not (i.lazy or i.type_only)
        and any(_in(i.target, p) for p in ("mef", "meo", "benchmarks"))
    ]
    assert not bad, f"module-level imports of servers/benchmarks in the CLI:\n{_report(bad)}"


def test_ui_and_plotting_only_in_the_cli_and_the_bench() -> None:
    bad = [
        i
        for i in all_imports()
        if i.target.split(".")[0] in EXTRAS
        and not (_in(i.importer, "mecfed.cli") or _in(i.importer, "benchmarks"))
    ]
    assert not bad, f"optional extras imported outside the CLI and the bench:\n{_report(bad)}"


def test_no_module_over_500_lines() -> None:
    too_long = []
    for path in modules().values():
        rel = path.relative_to(ROOT).as_posix()
        if GENERATED.match(rel):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long.append(f"{rel}: {lines} lines")
    assert not too_long, f"modules over {MAX_LINES} lines:\n" + "\n".join(too_long)


def _loaded_after(code: str) -> set[str]:
    """Top-level package names in sys.modules after running ``code`` in a
    fresh interpreter."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_daemons_load_no_ui_plotting_or_app_code() -> None:
    loaded = _loaded_after("import mef.server, meo.server")
    bad = sorted(
        m for m in loaded if m.split(".")[0] in EXTRAS or any(_in(m, p) for p in APP_PACKAGES)
    )
    assert not bad, f"importing the daemons loads {bad}"


def test_cli_help_and_parsing_stay_light() -> None:
    code = (
        "import contextlib, io\n"
        "from mecfed.cli import main, parser\n"
        "parser().parse_args(['mef', 'serve', '--config', 'x.json'])\n"
        "parser().parse_args(['bench', '--quick'])\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
    )
    loaded = _loaded_after(code)
    heavy = ("mef", "meo", "benchmarks", "grpc", "mecfed.testbed", "mecfed.chain", *EXTRAS)
    bad = sorted(m for m in loaded if any(_in(m, h) for h in heavy))
    assert not bad, f"`mecfed --help` loads {bad}"


@pytest.mark.parametrize(("command", "extra"), [("demo", "ui"), ("bench", "bench")])
def test_a_missing_extra_is_one_clear_error(
    command: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from mecfed.cli import extras, main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        extras.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("rich", "matplotlib") else real(name, *a),
    )
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert f"mecfed {command}: error:" in err and f"pip install 'mecfed[{extra}]'" in err, err
