"""Node states, numerically equal to internvla_msgs/PolicyStatus.STATE_* (the robot moves only in RUNNING)."""

from __future__ import annotations

import enum


class PolicyState(enum.IntEnum):
    STARTING = 0
    WAITING = 1
    RUNNING = 2
    HOLDING = 3
    DISABLED = 4
    ESTOPPED = 5
    ERROR = 6
