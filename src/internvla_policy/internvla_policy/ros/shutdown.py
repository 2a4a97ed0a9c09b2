"""How every node's main loop ends on Ctrl-C or an external shutdown: quietly, with exit status 0."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException


@contextmanager
def interruptible(context: Context | None = None) -> Iterator[None]:
    """Swallow what spinning raises because the process is being stopped, and nothing else.

    rclpy's SIGINT handler invalidates the context from the signal, so a callback that was
    publishing at that moment raises ``RCLError`` ("publisher's context is invalid") out of the
    spin instead of ``KeyboardInterrupt``; that error is a stop too when ``context`` (default: the
    default context) is down.
    """
    try:
        yield
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok(context=context):
            raise
