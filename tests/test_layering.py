"""Dependencies point down: proxy -> memory / adapters, never back.

Every import in the shipped packages is read from the source (module level,
inside functions and under ``TYPE_CHECKING`` alike), so a lazy import cannot
hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"proxy", "memory", "adapters", "bench", "testing", "tests"}
# what each package may import of ours (besides itself)
ALLOWED = {
    "memory": set(),
    "adapters": set(),
    "proxy": {"memory", "adapters"},
    "bench": {"proxy", "memory", "adapters", "testing"},
}
# the ``memproxy`` command sits above everything: it loads bench only for ``memproxy bench``
EXCEPTIONS = {"proxy/cli.py": {"bench"}}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_upward_or_sideways_imports(package: str) -> None:
    allowed = ALLOWED[package] | {package}
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        here = allowed | EXCEPTIONS.get(str(path.relative_to(ROOT)), set())
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top in OURS and top not in here:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, f"{package} may import only {sorted(allowed)}:\n" + "\n".join(bad)


def test_the_walker_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from proxy.config import Settings\n"
        "def f():\n    import proxy.app\n"
    )
    assert [m for _, m in imports_of(sample)] == ["typing", "proxy.config", "proxy.app"]
