"""The whole life of an access grant over HTTP: request → approve → query → replay → budget →
estimate → history → audit → usage → revoke."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from gateway_support import World, assert_error

AVG_AGE = "SELECT AVG(age) AS mean_age FROM people"
COUNT_MARRIED = "SELECT married, COUNT(*) AS n FROM people GROUP BY married"


def test_full_flow(world: World) -> None:
    ivan, olivia, oscar = world.client("ivan"), world.client("olivia"), world.client("oscar")
    with ivan, olivia, oscar:
        until = (datetime.now(UTC) + timedelta(days=7)).isoformat()
        created = ivan.post(
            "/api/v1/access-requests",
            json={
                "dataset": "pums",
                "purpose": "Age structure for a pension study.",
                "columns": ["age", "married"],
                "epsilon": 1.0,
                "valid_until": until,
            },
        )
        assert created.status_code == 201, created.text
        request = created.json()
        assert request["status"] == "pending" and request["organisation"] == "initech"

        assert request["id"] in {r["id"] for r in olivia.get("/api/v1/access-requests").json()}
        pending = olivia.get("/api/v1/access-requests", params={"status": "pending"}).json()
        assert request["id"] in {r["id"] for r in pending}

        approved = olivia.post(
            f"/api/v1/access-requests/{request['id']}/approve",
            json={"epsilon": 0.9, "max_epsilon_per_query": 0.4},
        )
        assert approved.status_code == 200, approved.text
        policy = approved.json()
        assert policy["status"] == "active" and policy["epsilon"] == 0.9
        assert ivan.get(f"/api/v1/access-requests/{request['id']}").json()["status"] == "approved"
        assert [p["id"] for p in ivan.get("/api/v1/policies").json()] == [policy["id"]]

        estimate = ivan.post(
            "/api/v1/queries/estimate", json={"dataset": "pums", "sql": AVG_AGE, "epsilon": 0.4}
        )
        assert estimate.status_code == 200, estimate.text
        assert estimate.json()["budget_after"]["epsilon_remaining"] == 0.5
        assert _remaining(ivan) == 0.9

        first = ivan.post("/api/v1/queries", json={"dataset": "pums", "sql": AVG_AGE, "epsilon": 0.4})
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["columns"] == ["mean_age"] and len(answer["rows"]) == 1
        assert answer["epsilon_spent"] == 0.4 and answer["cached"] is False
        assert abs(answer["budget"]["epsilon_remaining"] - 0.5) < 1e-9
        assert answer["accuracy"][0]["column"] == "mean_age"

        replay = ivan.post("/api/v1/queries", json={"dataset": "pums", "sql": AVG_AGE, "epsilon": 0.4})
        assert replay.status_code == 200
        replayed = replay.json()
        assert replayed["cached"] is True and replayed["epsilon_spent"] == 0.0
        assert replayed["rows"] == answer["rows"]
        assert replayed["query_id"] != answer["query_id"]
        assert abs(_remaining(ivan) - 0.5) < 1e-9

        second = ivan.post("/api/v1/queries", json={"dataset": "pums", "sql": COUNT_MARRIED, "epsilon": 0.4})
        assert second.status_code == 200, second.text
        exhausted = ivan.post(
            "/api/v1/queries",
            json={"dataset": "pums", "sql": COUNT_MARRIED.replace("n FROM", "k FROM"), "epsilon": 0.4},
        )
        assert_error(exhausted, 403)
        assert exhausted.json()["error"]["rule"].startswith("budget.")
        assert abs(_remaining(ivan) - 0.1) < 1e-9

        history = ivan.get("/api/v1/queries").json()
        assert {q["status"] for q in history} >= {"answered", "replayed", "rejected"}
        assert all(q["organisation"] == "initech" for q in history)
        one = ivan.get(f"/api/v1/queries/{answer['query_id']}").json()
        assert one["sql"] == AVG_AGE and one["epsilon"] == 0.4 and "rows" not in one

        report = oscar.get("/api/v1/audit/verify").json()
        assert report["ok"] is True and report["first_error"] is None

        events = oscar.get("/api/v1/audit", params={"actor": "ivan"}).json()
        types = [e["type"] for e in events]
        for expected in ("access.requested", "query.answered", "query.replayed", "query.rejected"):
            assert expected in types
        assert all(e["actor"] == "ivan" for e in events)
        by_type = oscar.get("/api/v1/audit", params={"type": "access.approved", "org": "initech"}).json()
        assert [e["actor"] for e in by_type] == ["olivia"]

        exported = oscar.get("/api/v1/audit/export", params={"format": "jsonl", "actor": "ivan"})
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        assert [json.loads(line)["type"] for line in exported.text.splitlines()] == types
        as_csv = oscar.get("/api/v1/audit/export", params={"format": "csv", "actor": "ivan"})
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert len(list(csv.DictReader(io.StringIO(as_csv.text)))) == len(events)

        for viewer in (oscar, olivia):
            usage = viewer.get("/api/v1/usage", params={"org": "initech"}).json()
            (row,) = usage["rows"]
            assert row["dataset"] == "pums" and row["queries_answered"] == 2
            assert row["queries_cached"] == 1 and row["queries_rejected"] >= 1
            assert abs(row["epsilon_spent"] - 0.8) < 1e-9

        revoked = olivia.post(f"/api/v1/policies/{policy['id']}/revoke", json={"reason": "study ended"})
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        after = ivan.post("/api/v1/queries", json={"dataset": "pums", "sql": AVG_AGE, "epsilon": 0.05})
        assert_error(after, 403)


def test_reject_with_reason(world: World) -> None:
    with world.client("ivan") as ivan, world.client("otto") as otto:
        created = ivan.post(
            "/api/v1/access-requests",
            json={
                "dataset": "pums_t",
                "purpose": "Commuter ages.",
                "columns": ["age"],
                "epsilon": 0.5,
                "valid_until": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            },
        ).json()
        rejected = otto.post(
            f"/api/v1/access-requests/{created['id']}/reject", json={"reason": "Out of scope."}
        )
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["status"] == "rejected"
        seen = ivan.get(f"/api/v1/access-requests/{created['id']}").json()
        assert seen["reason"] == "Out of scope." and seen["decided_by"] == "otto"


def _remaining(client: object) -> float:
    budgets = client.get("/api/v1/budget").json()  # type: ignore[attr-defined]
    (active,) = [b for b in budgets if b["status"] == "active"]
    return float(active["epsilon_remaining"])
