"""What a source distribution of this checkout carries: the files the README points to."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_sdist_has_the_license_changelog_and_examples(tmp_path: Path) -> None:
    # Built in a child so setuptools' logging and temporary files stay out of this process.
    build = (
        "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    name = result.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    for expected in ("LICENSE", "CHANGELOG.md", "README.md", "examples/quickstart.py"):
        assert expected in members, expected
    assert "sankofa_sdk/py.typed" in members
    assert not any("__pycache__" in m for m in members)


def test_the_version_matches_the_changelog() -> None:
    # A release has its CHANGELOG section; between releases main is a development release of
    # the next version, newer than every released section.
    import re

    from sankofa_sdk import __version__

    changelog = (REPO / "CHANGELOG.md").read_text()
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d\d-\d\d$", changelog, re.M)
    assert released, "no released section"

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    if __version__ in released:
        return
    match = re.fullmatch(r"(\d+\.\d+\.\d+)\.dev\d+", __version__)
    assert match, f"{__version__} is neither a released version nor a .devN of the next one"
    assert key(match.group(1)) > max(key(v) for v in released)
    assert "## [Unreleased]" in changelog
