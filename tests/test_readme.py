"""The README's test snippets are what a user copies: they must pass ``mypy --strict`` and run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _test_snippets() -> list[str]:
    return [b for b in BLOCK.findall(README.read_text()) if re.search(r"^def test_", b, re.M)]


def test_the_readme_has_test_snippets() -> None:
    assert _test_snippets()


@pytest.mark.parametrize("index", range(len(_test_snippets())))
def test_a_readme_test_snippet_passes_mypy_strict_and_pytest(index: int, tmp_path: Path) -> None:
    pytest.importorskip("mypy")  # in the lint extra, which CI installs
    path = tmp_path / f"test_snippet_{index}.py"
    path.write_text(_test_snippets()[index])
    typed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert typed.returncode == 0, typed.stdout
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
