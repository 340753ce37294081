"""The shape of the code base: which package may import which, light packages stay light, small files."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "metrics", "datasets", "reports")
# Who may import whom (besides itself). bench drives everything; below it the arrows point down only.
# reports draws example figures, so it reads images (datasets) and resizes maps like methods do.
ALLOWED = {
    "bench": {"methods", "metrics", "datasets", "reports"},
    "reports": {"metrics", "datasets", "methods"},
    "methods": set(),
    "metrics": set(),
    "datasets": set(),
}
# The plugin API: the one name a plugin, built-in or not, takes from the harness.
PLUGIN_API = ("bench", "hookimpl")
MAX_LINES = 400


def library_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))


def imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` of every import in ``path``, at any depth (function-level ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def package_of(path: Path) -> str:
    return path.relative_to(REPO).parts[0]


def test_imports_between_packages_point_one_way():
    wrong = []
    for path in library_files():
        source = package_of(path)
        for module, names in imports(path):
            target = module.split(".")[0]
            if target not in PACKAGES or target == source or target in ALLOWED[source]:
                continue
            if (module, names) == (PLUGIN_API[0], (PLUGIN_API[1],)):
                continue
            wrong.append(f"{path.relative_to(REPO)}: {module} {names or ''}")
    assert not wrong, "imports against the direction of dependencies:\n" + "\n".join(wrong)


def test_no_cycle_between_packages():
    edges = {package: set() for package in PACKAGES}
    for path in library_files():
        for module, names in imports(path):
            target = module.split(".")[0]
            if target in PACKAGES and target != package_of(path) and (module, names) != (PLUGIN_API[0], (PLUGIN_API[1],)):
                edges[package_of(path)].add(target)

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in edges[start])

    cycles = [package for package in PACKAGES if reaches(package, package, {package})]
    assert not cycles, f"packages on an import cycle: {cycles}; edges: {edges}"


@pytest.mark.parametrize("package", ["metrics", "datasets"])
def test_light_packages_import_without_pluggy_paddle_or_the_harness(package):
    code = f"""
import importlib.abc, sys

class Missing(importlib.abc.MetaPathFinder):
    # As if pluggy and Paddle were not installed.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pluggy", "paddle"):
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None

sys.meta_path.insert(0, Missing())
import {package}
print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"pluggy", "paddle", "bench", "methods", "reports", "torch"}}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_each_file_says_its_job_and_stays_small(path):
    text = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(text))
    if path.name == "__init__.py" and not text.strip():
        return  # an empty package marker has no job to state
    assert docstring and docstring.strip().splitlines()[0], f"{path} has no first docstring line saying its job"
    assert len(text.splitlines()) <= MAX_LINES, f"{path} has {len(text.splitlines())} lines (at most {MAX_LINES})"
