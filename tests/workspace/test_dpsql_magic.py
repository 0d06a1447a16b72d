"""``%%dpsql`` in a real IPython shell against a real gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from workspace_support import Gateway

from sandbox.client import Client, DPFrame
from sandbox.magic import MagicUsageError, parse_options

CELL = "SELECT sex, COUNT(*) AS n FROM residents GROUP BY sex"


@pytest.fixture
def shell(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SANDBOX_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("SANDBOX_TOKEN", gateway.tokens["bob"])
    shell: Any = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "sandbox.magic")
    yield shell
    shell.run_line_magic("unload_ext", "sandbox.magic")


def test_dpsql_shows_the_answer_and_a_budget_meter(shell: Any) -> None:
    with capture_output() as captured:
        shell.run_cell_magic("dpsql", "dataset=residents epsilon=0.1 into=by_sex", CELL)
    answer = shell.user_ns["by_sex"]
    assert isinstance(answer, DPFrame) and shell.user_ns["_dpsql"] is answer
    assert sorted(answer["sex"]) == ["F", "M"] and answer.attrs["epsilon_spent"] == 0.1
    shown = [str(output) for output in captured.outputs]
    assert len(shown) == 2
    meter = captured.outputs[1].data["text/plain"]
    budget = Client().budget().set_index("dataset").loc["residents"]
    assert meter.startswith("隐私预算 budget residents:")
    assert f"ε {budget['epsilon_spent']:g} spent / {budget['epsilon_remaining']:g} remaining of 10" in meter
    assert "this answer ε 0.1" in meter
    assert "±" in captured.outputs[0].data["text/html"]


def test_dpsql_replay_says_no_cost(shell: Any) -> None:
    shell.run_cell_magic("dpsql", "dataset=residents epsilon=0.1", CELL)
    with capture_output() as captured:
        shell.run_cell_magic("dpsql", "dataset=residents epsilon=0.1", CELL)
    assert shell.user_ns["_dpsql"].attrs["cached"] is True
    assert "replayed, no cost" in captured.outputs[1].data["text/plain"]


def test_dpsql_uses_a_named_client(shell: Any, gateway: Gateway) -> None:
    shell.user_ns["tina_client"] = Client(gateway.url, gateway.tokens["tina"])
    shell.run_cell_magic(
        "dpsql", "dataset=residents epsilon=0.05 client=tina_client", "SELECT COUNT(*) AS n FROM residents"
    )
    assert shell.user_ns["_dpsql"].attrs["budget"]["epsilon_remaining"] <= 0.25


def test_dpsql_denial_is_one_line(shell: Any) -> None:
    with capture_output() as captured:
        result = shell.run_cell("%%dpsql dataset=bus_trips epsilon=0.1\nSELECT COUNT(*) AS n FROM bus_trips")
    assert not result.success
    lines = [line for line in captured.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "PolicyDenied" in lines[0] and "policy.no_active_policy" in lines[0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("epsilon=0.1", "dataset"),
        ("dataset=residents", "epsilon"),
        ("dataset=residents epsilon=abc", "number"),
        ("dataset=residents epsilon=0.1 colour=red", "cannot read"),
        ("dataset=residents epsilon", "cannot read"),
        ("dataset=residents epsilon=0.1 ci=5", "not both"),
        ("dataset=residents ci=5 group_size=many", "whole number"),
        ("dataset=residents ci=wide", "number"),
        ("dataset=residents epsilon=0.1 max_joined_rows_per_unit=two", "whole number"),
        ("dataset=residents epsilon=0.1 max_joined_rows_per_unit=-1", "whole number"),
    ],
)
def test_malformed_magic_lines_say_what_to_write(line: str, message: str) -> None:
    with pytest.raises(MagicUsageError, match=message):
        parse_options(line)


def test_parse_options_reads_every_option() -> None:
    assert parse_options("dataset=residents epsilon=0.5 delta=1e-6 into=x client=c") == {
        "dataset": "residents",
        "epsilon": "0.5",
        "delta": "1e-6",
        "into": "x",
        "client": "c",
    }


def test_dpsql_passes_a_joined_rows_bound_to_the_gateway(shell: Any) -> None:
    """The option reaches the gateway, which refuses it on a query without a join (a 4xx naming
    the rule, the same for any data), before any budget is spent."""
    spent = Client().budget().set_index("dataset")["epsilon_spent"].to_dict()["residents"]
    with capture_output() as captured:
        result = shell.run_cell("%%dpsql dataset=residents epsilon=0.1 max_joined_rows_per_unit=1\n" + CELL)
    assert not result.success and "request.max_joined_rows_per_unit" in captured.stdout
    assert Client().budget().set_index("dataset")["epsilon_spent"].to_dict()["residents"] == spent


def test_parse_options_reads_an_accuracy_target() -> None:
    assert parse_options("dataset=residents ci=50 group_size=1000") == {
        "dataset": "residents",
        "ci": "50",
        "group_size": "1000",
    }
