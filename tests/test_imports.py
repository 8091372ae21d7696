"""The house of DESIGN.md: rate_sb3's modules import each other along one-way arrows, never in a circle.

Every import statement counts, wherever it stands: at module level, inside a function, or under ``TYPE_CHECKING``.
A function-level import hides a circle from Python at import time, not from a reader, and a ``TYPE_CHECKING`` import
still ties two modules together. An import of ``rate_sb3.a.b`` is an edge to that module alone, not to the packages
above it that Python runs first (every subpackage's ``__init__`` would otherwise close a circle with its modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rate_sb3

PACKAGE_DIR = Path(rate_sb3.__file__).parent
FRAMEWORKS = ("gymnasium", "stable_baselines3", "sb3_contrib", "rl_zoo3")
PURE_TORCH = ("rate_sb3.architecture", "rate_sb3.attention", "rate_sb3.derived", "rate_sb3.model")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def imported_names(module: str) -> set[str]:
    """Absolute names of every module or package that ``module`` imports, ours and others'."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # ``from package import module``
    return names


def our_imports(module: str) -> set[str]:
    """The modules of rate_sb3 that ``module`` imports (a name imported from a module is an edge to the module)."""
    return {name for name in imported_names(module) if name in MODULES} - {module}


def dependencies(module: str) -> set[str]:
    """Every module of rate_sb3 that ``module`` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for name in our_imports(todo.pop()) - seen:
            seen.add(name)
            todo.append(name)
    return seen


def test_the_module_list_is_the_package():
    assert {"rate_sb3", "rate_sb3.rate", "rate_sb3.model", "rate_sb3.envs", "rate_sb3.envs.tmaze"} <= set(MODULES)
    assert our_imports("rate_sb3.rate") >= {"rate_sb3.policies", "rate_sb3.online"}


def test_no_import_circles():
    on_circles = {module: sorted(our_imports(module)) for module in MODULES if module in dependencies(module)}
    assert not on_circles, f"modules on import circles, with what they import: {on_circles}"


@pytest.mark.parametrize("module", PURE_TORCH)
def test_the_transformer_is_pure_torch(module):
    framework_imports = {name for name in imported_names(module) if name.split(".")[0] in FRAMEWORKS}
    assert not framework_imports, f"{module} imports {framework_imports}"
    assert dependencies(module) <= set(PURE_TORCH), f"{module} depends on {dependencies(module) - set(PURE_TORCH)}"


@pytest.mark.parametrize("module", [name for name in MODULES if name.startswith("rate_sb3.envs")])
def test_envs_depend_on_nothing_of_ours(module):
    outside = {name for name in dependencies(module) if not name.startswith("rate_sb3.envs")}
    assert not outside, f"{module} depends on {outside}"


# DESIGN's arrows: model <- inference <- stepping <- policies <- rate -> buffers, data; rate -> online ->
# return_conditioned; zoo -> rate. No module depends on one that points at it.
ARROWS = [
    ("rate_sb3.inference", "rate_sb3.model"),
    ("rate_sb3.stepping", "rate_sb3.inference"),
    ("rate_sb3.policies", "rate_sb3.stepping"),
    ("rate_sb3.rate", "rate_sb3.policies"),
    ("rate_sb3.rate", "rate_sb3.online"),
    ("rate_sb3.online", "rate_sb3.return_conditioned"),
    ("rate_sb3.rate", "rate_sb3.buffers"),
    ("rate_sb3.rate", "rate_sb3.data"),
    ("rate_sb3.zoo", "rate_sb3.rate"),
]


@pytest.mark.parametrize(("upper", "lower"), ARROWS)
def test_arrows_point_one_way(upper, lower):
    assert lower in dependencies(upper)
    assert upper not in dependencies(lower), f"{lower} depends on {upper}"


def test_only_the_entry_points_depend_on_the_algorithm():
    algorithm_users = {module for module in MODULES if "rate_sb3.rate" in our_imports(module)}
    assert algorithm_users <= {"rate_sb3", "rate_sb3.zoo", "rate_sb3.evaluate"}
