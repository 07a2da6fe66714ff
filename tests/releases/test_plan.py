"""Plan validation: each rule answers 400 naming the field that broke it."""

from __future__ import annotations

import pytest

from apps.core.errors import DomainError
from apps.releases.services import plan_validate
from tests.releases.conftest import start


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ("canary", "plan"),
        ([10, 100], "plan"),
        ({"steps": []}, "plan.steps"),
        ({"steps": [0, 100]}, "plan.steps"),
        ({"steps": [10, 101]}, "plan.steps"),
        ({"steps": [10.5, 100]}, "plan.steps"),
        ({"steps": [True, 100]}, "plan.steps"),
        ({"steps": [50, 10, 100]}, "plan.steps"),
        ({"steps": [10, 10, 100]}, "plan.steps"),
        ({"steps": [10, 50]}, "plan.steps"),
        ({"steps": [10, 100], "advance": "sometimes"}, "plan.advance"),
        ({"steps": [10, 100], "advance": "auto"}, "plan.dwell_s"),
        ({"steps": [10, 100], "advance": "auto", "dwell_s": 0}, "plan.dwell_s"),
        ({"steps": [10, 100], "dwell_s": "60"}, "plan.dwell_s"),
        ({"steps": [10, 100], "colour": "blue"}, "plan.colour"),
        ({"steps": [10, 100], "gate": []}, "plan.gate"),
        ({"steps": [10, 100], "gate": {"min_requests": 5}}, "plan.gate"),
        ({"steps": [10, 100], "gate": {"min_requests": 0, "max_error_rate": 0.1}}, "plan.gate.min_requests"),
        ({"steps": [10, 100], "gate": {"max_error_rate": 1.5}}, "plan.gate.max_error_rate"),
        ({"steps": [10, 100], "gate": {"max_error_rate": -0.1}}, "plan.gate.max_error_rate"),
        ({"steps": [10, 100], "gate": {"max_error_rate_delta": 2}}, "plan.gate.max_error_rate_delta"),
        ({"steps": [10, 100], "gate": {"max_p95_factor": 0.5}}, "plan.gate.max_p95_factor"),
        ({"steps": [10, 100], "gate": {"max_p95_factor": 2, "window_s": 0}}, "plan.gate.window_s"),
        ({"steps": [10, 100], "gate": {"max_p95_factor": 2, "p99": 1}}, "plan.gate.p99"),
    ],
)
def test_a_bad_plan_names_the_field(plan, field):
    with pytest.raises(DomainError) as caught:
        plan_validate(plan)
    assert caught.value.status_code == 400
    assert list(caught.value.fields) == [field]
    assert caught.value.message.startswith(f"{field}:")


def test_good_plans_are_normalised():
    assert plan_validate("direct") == {"steps": [100], "advance": "manual", "dwell_s": None, "gate": None}
    assert plan_validate({"steps": "direct"})["steps"] == [100]
    assert plan_validate({"steps": [100], "advance": "auto"})["advance"] == "auto"  # nothing to dwell on
    full = plan_validate(
        {
            "steps": [1, 99, 100],
            "advance": "auto",
            "dwell_s": 1,
            "gate": {"max_error_rate": 0, "max_error_rate_delta": 0.05, "max_p95_factor": 1.5, "window_s": 30},
        }
    )
    assert full["gate"] == {
        "max_error_rate": 0,
        "max_error_rate_delta": 0.05,
        "max_p95_factor": 1.5,
        "window_s": 30,
        "min_requests": 1,
    }


def test_the_api_answers_400_in_the_envelope_naming_the_field(world, client_for, fn):
    response = start(client_for(world.bob), fn, {"steps": [10, 50], "advance": "manual"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "plan.steps" in error["fields"] and "last step must be 100" in error["message"]
    missing = client_for(world.bob).post(f"/api/v1/functions/{fn.pk}/releases/", {"version": 2}, format="json")
    assert missing.status_code == 400 and {"environment", "plan"} <= set(missing.json()["error"]["fields"])
