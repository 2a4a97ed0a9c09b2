"""One background thread that runs one inference at a time, off the ROS executor.

Two kinds of work reach it. Stream jobs (ground the newest camera frame) share a single slot:
a job waiting there is replaced by a newer one, so a slow model never works through a backlog
of old frames. Requests (the Ground service) queue in order, are served before stream jobs, and
return their result to the waiting caller.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class WorkerBusyError(RuntimeError):
    """The request queue is full."""


class InferenceWorker:
    def __init__(
        self,
        setup: Callable[[], None],
        on_error: Callable[[Exception], None],
        max_requests: int = 4,
        name: str = "inference",
    ) -> None:
        """setup runs first on the worker thread (e.g. loading the model) and jobs wait for it;
        on_error receives what a stream job raised (requests get their own errors back)."""
        self._setup = setup
        self._on_error = on_error
        self._max_requests = max_requests
        self._cond = threading.Condition()
        self._latest: Callable[[], None] | None = None
        self._requests: collections.deque[tuple[Callable[[], object], Future]] = collections.deque()
        self._stopping = False
        self.ready = threading.Event()
        self.setup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit_latest(self, job: Callable[[], None]) -> bool:
        """Make job the next stream job; True when it replaced one that had not started (a skipped frame)."""
        with self._cond:
            replaced = self._latest is not None
            self._latest = job
            self._cond.notify()
            return replaced

    def request(self, job: Callable[[], T], timeout_s: float) -> T:
        """Run job on the worker, return its result; raises TimeoutError, WorkerBusyError or its error."""
        future: Future = Future()
        entry = (job, future)
        with self._cond:
            if self.setup_error is not None:
                raise RuntimeError(f"model not available: {self.setup_error}")
            if len(self._requests) >= self._max_requests:
                raise WorkerBusyError(f"{self._max_requests} requests already waiting")
            self._requests.append(entry)
            self._cond.notify()
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            with self._cond:  # still queued: withdraw it; already running: it finishes unseen
                if entry in self._requests:
                    self._requests.remove(entry)
            raise

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the running job, cancel the rest, and join the thread."""
        with self._cond:
            self._stopping = True
            self._latest = None
            while self._requests:
                self._requests.popleft()[1].cancel()
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            self._setup()
        except Exception as exc:  # every later request is told; the owner sees setup_error
            with self._cond:
                self.setup_error = exc
                while self._requests:
                    self._requests.popleft()[1].set_exception(RuntimeError(f"model not available: {exc}"))
            self.ready.set()
            return
        self.ready.set()
        while True:
            with self._cond:
                while not (self._stopping or self._requests or self._latest):
                    self._cond.wait()
                if self._stopping:
                    return
                if self._requests:
                    job, future = self._requests.popleft()
                else:
                    job, future = self._latest, None
                    self._latest = None
            if future is None:
                try:
                    job()
                except Exception as exc:  # a bad frame must not end the worker
                    self._on_error(exc)
            elif future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except Exception as exc:
                    future.set_exception(exc)
