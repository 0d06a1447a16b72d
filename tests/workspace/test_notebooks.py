"""The notebooks are stored without outputs and run top to bottom against a real gateway."""

from __future__ import annotations

from typing import Any

import nbclient
import nbformat
import pytest
from workspace_support import NOTEBOOKS, Gateway

NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def test_the_five_walkthroughs_exist() -> None:
    assert [n[:2] for n in NAMES] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    notebook = _read(name)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def _read(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _run(name: str, gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SANDBOX_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("SANDBOX_TOKEN", gateway.tokens["alice"])
    monkeypatch.setenv("SANDBOX_OWNER_TOKEN", gateway.tokens["census"])
    monkeypatch.setenv("SANDBOX_OPERATOR_TOKEN", gateway.tokens["oscar"])
    notebook = _read(name)
    nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3").execute()
    return notebook


def _text(notebook: Any) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(v) for v in output.get("data", {}).values())
            parts.append(output.get("evalue", ""))
    return "\n".join(parts)


def test_analyst_quickstart_runs(notebook_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = _run("01_analyst_quickstart.ipynb", notebook_gateway, monkeypatch)
    text = _text(notebook)
    assert "'name': 'alice'" in text and "'pending'" in text
    assert "±" in text and "image/png" in str(notebook.cells)
    assert "[sql.select_star]" in text and "policy.no_active_policy" in text
    assert "cached: True · epsilon spent: 0.0" in text and "same numbers: True" in text
    assert "隐私预算 budget residents:" in text


def test_accuracy_notebook_runs(notebook_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _text(_run("02_accuracy_vs_epsilon.ipynb", notebook_gateway, monkeypatch))
    assert "cached: True · same answer: True" in text


def test_owner_walkthrough_runs(notebook_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _text(_run("03_data_owner_walkthrough.ipynb", notebook_gateway, monkeypatch))
    assert "'organisation': 'census-bureau'" in text
    assert "registered pums" in text and "sandbox.registration-certificate" in text
    assert "for acme on adult status active" in text


def test_operator_walkthrough_runs(notebook_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _text(_run("04_operator_walkthrough.ipynb", notebook_gateway, monkeypatch))
    assert "'roles': ['operator']" in text and "(True," in text
    assert "query.answered" in text and "sql.select_star" in text


def test_joins_and_histograms_notebook_runs(
    notebook_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = _run("05_joins_and_histograms.ipynb", notebook_gateway, monkeypatch)
    text = _text(notebook)
    assert "SYNTHETIC rows" in text and "no access yet" not in text
    assert "age_band" in text and "image/png" in str(notebook.cells)
    assert "Zhongxin" in text and "share_over_500" in text
    assert "epsilon derived:" in text and "group size of 300" in text and "does not fit the policy" in text
    assert "withheld rows:" in text and "withheld (fewer than 10)" in text and "[a – b] = 95% CI" in text
    assert "joined rows kept per person: 2" in text
