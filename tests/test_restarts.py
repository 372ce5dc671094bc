"""When `dormouse up` restarts a child that exited, and when it gives up."""

from __future__ import annotations

import pytest

from cli.restarts import RestartPolicy
from cli.supervisor import describe_exit


@pytest.mark.parametrize(
    ("exits", "expected"),
    [
        # (ran_for, at) of each exit -> the delay after the last one (None = give up)
        ([(600, 600)], 0.0),  # ran ten minutes: restart at once
        ([(2, 2)], 1.0),
        ([(2, 2), (1, 4)], 2.0),
        ([(2, 2), (1, 4), (1, 7)], 4.0),
        ([(2, 2), (1, 4), (1, 7), (1, 12)], 8.0),
        ([(2, 2), (1, 4), (1, 7), (1, 12), (1, 21)], None),  # fifth fast crash in 2 minutes
        ([(2, 2), (1, 4), (1, 7), (1, 12), (100, 200)], 0.0),  # healthy again: forgiven
        ([(2, 2), (1, 4), (1, 7), (1, 12), (100, 200), (1, 202)], 1.0),
        ([(2, 0), (2, 130), (2, 260), (2, 390), (2, 520)], 1.0),  # slow crashes never give up
    ],
)
def test_restart_delay(exits: list[tuple[float, float]], expected: float | None) -> None:
    policy = RestartPolicy()
    result: float | None = -1.0
    for ran_for, at in exits:
        result = policy.record_exit("worker", ran_for=ran_for, now=at)
    assert result == expected


def test_the_delay_is_capped_and_each_process_counts_its_own_crashes() -> None:
    policy = RestartPolicy(max_fast_crashes=100, window=1e9)
    delays = [policy.record_exit("worker", ran_for=1, now=t) for t in range(10)]
    assert delays[-1] == policy.max_delay
    assert policy.record_exit("beat", ran_for=1, now=10) == 1.0


@pytest.mark.parametrize(
    ("status", "text"),
    [(0, "exited with status 0"), (1, "exited with status 1"), (-9, "was killed by SIGKILL")],
)
def test_exit_descriptions(status: int, text: str) -> None:
    assert describe_exit(status) == text
