"""``bench/storm.py`` in small: retries that reattach at once against a throttled emulator all get
their jobs back, submit and cancel nothing, and the figures the bench reports add up."""

from __future__ import annotations

from tests.helpers import load_bench


def test_a_small_storm_against_a_throttled_service_loses_nothing(airflow_db, monkeypatch) -> None:
    storm = load_bench("storm")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "memory")
    result = storm.storm(24, 8.0, job_seconds=6.0, poll_interval=3.0)

    assert result.failed == {}
    assert (result.submitted, result.cancelled) == (0, 0)
    assert result.throttled > 0, "the limit must have been reached, or the storm tested nothing"
    assert len(result.repolled) == 24
    # 24 status calls at 8 a second cannot all be answered in under 3 s.
    assert max(result.repolled) >= (24 - 8) / 8.0

    text = storm.markdown([result], "python bench/storm.py --tasks 24 --rate 8", result.seconds)
    assert text.startswith(storm.MARKER_BEGIN) and text.endswith(storm.MARKER_END)
    assert "| Retry-After honoured, spread with jitter | 24 | 8/s | 0 | 0 | 0 |" in text


def test_the_storm_without_retry_after_waits_by_backoff_alone(airflow_db, monkeypatch) -> None:
    """The bench's comparison row: the same tasks, the same service, waits chosen by backoff alone."""
    storm = load_bench("storm")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "memory")
    result = storm.storm(16, 8.0, pacing="backoff", job_seconds=6.0, poll_interval=3.0)
    assert result.failed == {}
    assert (result.submitted, result.cancelled) == (0, 0)
    assert len(result.repolled) == 16 and result.throttled > 0
    op = storm._operator("t", 3.0, "backoff")
    assert op.retry_after(RuntimeError("any")) is None
    assert "Retry-After ignored" in storm.markdown([result], "python bench/storm.py", result.seconds)


def test_throttling_is_retried_for_its_own_budget_not_the_error_budget(airflow_db, monkeypatch) -> None:
    """With one try for errors, a status call the service throttles is still retried until answered:
    a fleet's storm lasts as long as the service takes to answer every task once."""
    storm = load_bench("storm")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "memory")
    result = storm.storm(24, 4.0, job_seconds=8.0, poll_interval=4.0, status_retry_attempts=1)

    assert result.failed == {}
    assert result.throttled > 0
    assert (result.submitted, result.cancelled) == (0, 0)
