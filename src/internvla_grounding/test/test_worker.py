"""The inference worker: one job at a time, newest stream job wins, requests first."""

from __future__ import annotations

import threading
import time

import pytest

from internvla_grounding.worker import InferenceWorker, WorkerBusyError

TIMEOUT = 10.0


@pytest.fixture
def gate():
    """An event the test opens to let a blocked setup or job finish."""
    event = threading.Event()
    yield event
    event.set()


def make_worker(setup=lambda: None, errors=None, **kwargs) -> InferenceWorker:
    worker = InferenceWorker(setup=setup, on_error=(errors.append if errors is not None else print), **kwargs)
    worker.start()
    return worker


def occupy(worker: InferenceWorker, gate: threading.Event, then=lambda: None) -> None:
    """Give the worker a stream job that blocks until gate opens, and wait until it runs."""
    started = threading.Event()

    def job() -> None:
        started.set()
        gate.wait(TIMEOUT)
        then()

    worker.submit_latest(job)
    assert started.wait(TIMEOUT)


def wait_until(predicate, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_stream_jobs_wait_for_setup_and_only_the_newest_waiting_job_runs(gate):
    ran = []
    worker = make_worker(setup=lambda: gate.wait(TIMEOUT))
    try:
        assert worker.submit_latest(lambda: ran.append("frame 1")) is False
        assert worker.submit_latest(lambda: ran.append("frame 2")) is True  # frame 1 is skipped
        assert worker.submit_latest(lambda: ran.append("frame 3")) is True
        assert ran == []
        gate.set()
        wait_until(lambda: ran)
        assert worker.request(lambda: "flushed", TIMEOUT) == "flushed"
        assert ran == ["frame 3"]
    finally:
        worker.stop()


def test_requests_go_before_waiting_stream_jobs_and_return_results(gate):
    order = []

    def request_job() -> int:
        order.append("request")
        return 42

    worker = make_worker()
    try:
        occupy(worker, gate, then=lambda: order.append("running frame"))
        worker.submit_latest(lambda: order.append("next frame"))
        result = {}
        caller = threading.Thread(target=lambda: result.update(value=worker.request(request_job, TIMEOUT)))
        caller.start()
        time.sleep(0.05)
        gate.set()
        caller.join(TIMEOUT)
        assert result == {"value": 42}
        wait_until(lambda: len(order) == 3)
        assert order == ["running frame", "request", "next frame"]
    finally:
        worker.stop()


def test_request_errors_reach_the_caller_and_stream_errors_the_handler():
    errors: list[Exception] = []
    worker = make_worker(errors=errors)
    try:
        with pytest.raises(ZeroDivisionError):
            worker.request(lambda: 1 / 0, TIMEOUT)
        worker.submit_latest(lambda: [][1])
        wait_until(lambda: errors)
        assert [type(e) for e in errors] == [IndexError]
        assert worker.request(lambda: "still serving", TIMEOUT) == "still serving"
    finally:
        worker.stop()


def test_requests_time_out_and_the_queue_is_bounded(gate):
    outcome = {}

    def first_request() -> None:
        try:
            worker.request(lambda: outcome.setdefault("ran", True), 0.5)
        except TimeoutError:
            outcome["first"] = "timed out"

    worker = make_worker(max_requests=1)
    try:
        occupy(worker, gate)
        caller = threading.Thread(target=first_request)
        caller.start()
        time.sleep(0.1)
        with pytest.raises(WorkerBusyError, match="1 requests already waiting"):
            worker.request(lambda: 2, TIMEOUT)
        caller.join(TIMEOUT)
        assert outcome == {"first": "timed out"}
        gate.set()
        # The timed-out request was cancelled: it never runs, the next one does.
        assert worker.request(lambda: 3, TIMEOUT) == 3
        assert "ran" not in outcome
    finally:
        worker.stop()


def test_failed_setup_is_reported_to_requests():
    def setup():
        raise FileNotFoundError("no checkpoint here")

    worker = make_worker(setup=setup)
    try:
        assert worker.ready.wait(TIMEOUT)
        assert isinstance(worker.setup_error, FileNotFoundError)
        with pytest.raises(RuntimeError, match="model not available: no checkpoint here"):
            worker.request(lambda: 1, TIMEOUT)
    finally:
        worker.stop()
