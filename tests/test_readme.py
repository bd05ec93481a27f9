"""The README is the manual: its commands and settings table match the code."""

from __future__ import annotations

import re
from pathlib import Path

from warden.config import reference_rows

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_setup_commands() -> None:
    """The first code block is exactly `make run` and `make test`, and CI runs the latter."""
    text = README.read_text()
    first = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_settings_table_matches_the_code() -> None:
    """Every setting, its variable, default and description appear in the README as in config.py."""
    text = README.read_text()
    block = text.split("<!-- settings-table")[1].split("<!-- /settings-table -->")[0]
    rows = [r for r in block.splitlines() if r.startswith("| `")]
    documented = {r.split("|")[1].strip().strip("`"): r for r in rows}
    for name, env, default, description in reference_rows():
        assert name in documented, f"{name} is missing from the README"
        row = documented[name]
        assert f"`{env}`" in row and description in row, f"README row for {name} is stale"
        assert (f"`{default}`" in row) if default else ("—" in row), f"README default for {name} is stale"
    assert len(documented) == len(reference_rows())


def test_every_alert_kind_is_documented_with_its_severity() -> None:
    """The README's alert table lists every AlertKind with the severity the code gives it."""
    from warden.domain.alerts import AlertKind

    text = README.read_text()
    for kind in AlertKind:
        assert f"| `{kind.value}` | {kind.severity.value} |" in text, f"{kind.value} is not documented"


def test_every_test_the_guarantee_and_failure_tables_name_exists() -> None:
    """The guarantee and failure tables (and the Exits section) name the tests that prove them:
    each named test is a test module or a test function (a trailing `…` matches a prefix)."""
    text = README.read_text()
    sections = [
        text.split("## What warden guarantees")[1].split("## The incidents")[0],
        text.split("## Exits")[1].split("## Pointing it at")[0],
    ]
    named = {n for s in sections for n in re.findall(r"`(test_[A-Za-z0-9_…]+)`", s)}
    assert len(named) > 20, named
    tests = README.parent / "tests"
    modules = {p.stem for p in tests.rglob("test_*.py")}
    functions = {m for p in tests.rglob("test_*.py") for m in re.findall(r"def (test_\w+)", p.read_text())}
    missing = [
        n
        for n in sorted(named)
        if not (
            any(f.startswith(n.rstrip("…")) for f in functions | modules)
            if n.endswith("…")
            else n in modules or n in functions
        )
    ]
    assert missing == [], f"the README names tests that do not exist: {missing}"
