"""A schemathesis stateful run with valid and invalid data: no step is ever a 500, every error a problem."""
from __future__ import annotations

import hypothesis
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error

from notifications_api import create_app
from notifications_api.web.auth import issue_token

CREATE = "POST /api/v1/notifications"


def _offline_app():
    """Only serves the OpenAPI document at collection time (never connects); requests go to `app`."""
    return create_app({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/never", "ENVIRONMENT": "test",
                       "JWT_SECRET": "x" * 48, "SERVICE_TOKEN": "y" * 48, "ENABLE_DOCS": True,
                       "RATE_LIMIT_ENABLED": False, "LOG_LEVEL": "WARNING", "REDIS_HOST": ""})


schema = schemathesis.openapi.from_wsgi("/openapi.json", _offline_app())
# Positive and negative data: wrong types, missing and unknown fields, out-of-range values.
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
                                deterministic=True, database="none", with_security_parameters=False)


def test_stateful_run_with_hostile_data_never_fails_the_server(app, user):
    headers = {"Authorization": f"Bearer {issue_token(app.config, user)}",
               "X-Service-Token": app.config["SERVICE_TOKEN"]}
    failures: list[str] = []
    steps = []

    class Machine(schema.as_state_machine()):
        def before_call(self, case):
            if case.operation.label == CREATE and isinstance(case.body, dict) and "user_id" in case.body:
                case.body["user_id"] = user  # so links from a created notification lead somewhere

        def get_call_kwargs(self, case):
            return {"app": app, "headers": headers}

        def validate_response(self, response, case, **kwargs):
            steps.append(response.status_code)
            problems = []
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as exc:
                problems.append(str(exc)[:500])
            if response.status_code >= 400 and case.method.upper() != "HEAD":
                header = {k.lower(): v if isinstance(v, str) else v[0] for k, v in response.headers.items()}
                body = response.json() if "json" in header.get("content-type", "") else None
                if case.operation.path != "/health" and (
                        not isinstance(body, dict) or body.get("status") != response.status_code
                        or body.get("request_id") != header.get("x-request-id")):
                    problems.append("not a problem document")
            if problems:
                failures.append(f"{case.as_curl_command()}\n-> {response.status_code} {response.text[:300]}\n"
                                + "\n".join(problems))

    try:
        Machine.run(settings=hypothesis.settings(
            max_examples=60, stateful_step_count=10, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck)))
    except hypothesis.errors.Flaky:
        pass  # the server keeps state between Hypothesis's replays; the recorded failures decide
    print(f"\n{len(steps)} stateful steps: " + ", ".join(
        f"{status}: {steps.count(status)}" for status in sorted(set(steps))))
    assert not failures, "\n\n".join(failures[:3])
    assert len(steps) > 100 and any(status >= 400 for status in steps) and any(s < 300 for s in steps)
