"""Planning over HTTP (issue 12): estimate before access, accuracy-first ``ci``, assumed group sizes."""

from __future__ import annotations

from gateway_support import World, assert_error

from sandbox.query.mechanisms import integer_laplace

PYRAMID = "SELECT FLOOR(age / 10) * 10 AS band, sex, COUNT(*) AS n FROM people GROUP BY band, sex"


def test_estimate_answers_before_access(world: World) -> None:
    """bob's organisation has no policy on pums: estimate still answers, says so, and says what a
    policy would need; the query itself stays refused."""
    with world.client("bob") as bob:
        response = bob.post(
            "/api/v1/queries/estimate", json={"dataset": "pums", "sql": PYRAMID, "epsilon": 0.5}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["access"]["granted"] is False
        assert body["access"]["rule"] == "policy.no_active_policy"
        assert body["policy_needed"] == {
            "columns": ["age", "sex"],
            "aggregates": ["count"],
            "max_epsilon_per_query": 0.5,
            "max_delta_per_query": 0.0,
            "min_group_size": 0,
        }
        assert body["groups"] == 11 * 2 and body["grouping"] == "public_keys"
        assert body["budget_after"] == {"epsilon_remaining": None, "delta_remaining": None}
        assert body["aggregates"][0]["ci95"] == integer_laplace(1, 0.5).ci95()
        refused = bob.post("/api/v1/queries", json={"dataset": "pums", "sql": PYRAMID, "epsilon": 0.5})
        assert_error(refused, 403)
        assert refused.json()["error"]["code"] == "policy.no_active_policy"


def test_estimate_with_a_policy_says_whether_the_query_fits(world: World) -> None:
    with world.client("alice") as alice:
        fits = alice.post(
            "/api/v1/queries/estimate", json={"dataset": "pums", "sql": PYRAMID, "epsilon": 0.5}
        ).json()
        assert fits["access"]["granted"] is True and fits["access"]["fits_policy"] is True
        assert fits["access"]["policy_id"] == world.acme_policy.id
        too_big = alice.post(
            "/api/v1/queries/estimate", json={"dataset": "pums", "sql": PYRAMID, "epsilon": 6.0}
        ).json()
        assert too_big["access"]["fits_policy"] is False
        assert too_big["access"]["rule"] == "policy.epsilon_per_query_cap"


def test_histogram_with_an_aliased_bin_is_checked_on_its_columns(world: World) -> None:
    """The policy checks the columns a query reads; a bin's output name is not a column."""
    with world.client("alice") as alice:
        answer = alice.post("/api/v1/queries", json={"dataset": "pums", "sql": PYRAMID, "epsilon": 0.5})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [row[:2] for row in body["rows"]] == [[10 * b, s] for b in range(11) for s in (0, 1)]
        assert body["grouping"] == "public_keys" and body["epsilon_spent"] == 0.5


def test_assumed_group_size_gives_avg_a_ci(world: World) -> None:
    sql = "SELECT AVG(age) FROM people"
    with world.client("alice") as alice:
        without = alice.post("/api/v1/queries/estimate", json={"dataset": "pums", "sql": sql, "epsilon": 1.0})
        assert without.json()["aggregates"][0]["ci95"] is None
        small, large = (
            alice.post(
                "/api/v1/queries/estimate",
                json={"dataset": "pums", "sql": sql, "epsilon": 1.0, "group_size": n},
            ).json()["aggregates"][0]["ci95"]
            for n in (100, 1000)
        )
        assert small > 0 and abs(small / large - 10) < 1e-9  # the CI scales as 1 / N


def test_accuracy_first_query(world: World) -> None:
    """ci=20 on a count: the smallest epsilon whose 95% half-width is at most 20 is derived, spent
    and shown; a slightly smaller epsilon would not reach 20."""
    sql = "SELECT COUNT(*) AS n FROM people WHERE age > 60"
    with world.client("alice") as alice:
        answer = alice.post("/api/v1/queries", json={"dataset": "pums", "sql": sql, "ci": 20})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        epsilon = body["epsilon_spent"]
        assert body["ci_target"] == 20 and 0 < epsilon < 1
        assert body["accuracy"][0]["ci95"][0] <= 20
        reached, missed = integer_laplace(1, epsilon).ci95(), integer_laplace(1, epsilon * 0.995).ci95()
        assert reached is not None and missed is not None and reached <= 20 < missed
        estimate = alice.post("/api/v1/queries/estimate", json={"dataset": "pums", "sql": sql, "ci": 20})
        assert estimate.json()["epsilon"] == epsilon


def test_accuracy_first_refusals(world: World) -> None:
    with world.client("alice") as alice:
        both = alice.post(
            "/api/v1/queries",
            json={"dataset": "pums", "sql": "SELECT COUNT(*) FROM people", "epsilon": 1, "ci": 5},
        )
        assert_error(both, 422)
        assert both.json()["error"]["code"] == "request.epsilon"
        avg = alice.post(
            "/api/v1/queries", json={"dataset": "pums", "sql": "SELECT AVG(age) FROM people", "ci": 1}
        )
        assert_error(avg, 422)
        assert avg.json()["error"]["code"] == "request.ci_needs_group_size"
        tiny = alice.post(
            "/api/v1/queries", json={"dataset": "pums", "sql": "SELECT COUNT(*) FROM people", "ci": 1e-6}
        )
        assert_error(tiny, 422)
        assert tiny.json()["error"]["code"] == "request.ci_unreachable"
        median = alice.post(
            "/api/v1/queries", json={"dataset": "pums", "sql": "SELECT MEDIAN(age) FROM people", "ci": 3}
        )
        assert_error(median, 400)
        assert median.json()["error"]["code"] == "sql.ci_target_quantile"


def test_a_joined_rows_bound_is_a_request_field(world: World) -> None:
    """``max_joined_rows_per_unit`` reaches the engine (a query without a join is refused with the
    rule's code, before access too); 0, negative and non-integer values fail validation (422)."""
    count = {"dataset": "pums", "sql": "SELECT COUNT(*) FROM people", "epsilon": 0.5}
    with world.client("alice") as alice, world.client("bob") as bob:
        for client, path in (
            (alice, "/api/v1/queries"),
            (alice, "/api/v1/queries/estimate"),
            (bob, "/api/v1/queries/estimate"),
        ):
            refused = client.post(path, json={**count, "max_joined_rows_per_unit": 1})
            assert_error(refused, 422, "request.max_joined_rows_per_unit")
            assert "one table" in refused.json()["error"]["message"]
        for bad in (0, -3, 1.5, True, "2"):
            assert_error(alice.post("/api/v1/queries", json={**count, "max_joined_rows_per_unit": bad}), 422)
        assert alice.post("/api/v1/queries", json=count).status_code == 200


def test_preview_is_free_and_synthetic(world: World) -> None:
    """Any analyst who sees the dataset gets synthetic rows, with or without a policy, for nothing."""
    with world.client("bob") as bob, world.client("alice") as alice:
        before = alice.get("/api/v1/budget").json()
        shown = bob.get("/api/v1/datasets/pums/preview", params={"n": 25, "seed": 3})
        assert shown.status_code == 200, shown.text
        body = shown.json()
        assert body["synthetic"] is True and len(body["rows"]) == 25
        assert body["columns"][0] == "pid" and body["rows"][0][0] == "synthetic-1"
        again = alice.get("/api/v1/datasets/pums/preview", params={"n": 25, "seed": 3}).json()
        assert again["rows"] == body["rows"]
        assert alice.get("/api/v1/budget").json() == before
        assert_error(bob.get("/api/v1/datasets/pums/preview", params={"n": 0}), 422)
        assert_error(bob.get("/api/v1/datasets/pums_null/preview"), 404)  # core: not visible
