"""When ``dormouse up`` restarts a child that exited, and when it gives up.

A pure policy over exit times, so it is tested with a table of cases: a child that ran for a
while before exiting is restarted at once; one that keeps exiting fast waits longer each time
(1 s, 2 s, 4 s … up to ``max_delay``); ``max_fast_crashes`` fast exits within ``window``
seconds mean it cannot start at all (bad configuration), and waiting would only hide that.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class RestartPolicy:
    stable_after: float = 30.0  # a child that ran this long is healthy again
    window: float = 120.0
    max_fast_crashes: int = 5
    first_delay: float = 1.0
    max_delay: float = 30.0
    _fast: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def record_exit(self, name: str, *, ran_for: float, now: float) -> float | None:
        """The delay before restarting ``name``, or None when it keeps crashing fast."""
        if ran_for >= self.stable_after:
            self._fast.pop(name, None)
            return 0.0
        recent = [t for t in self._fast.get(name, []) if now - t < self.window]
        recent.append(now)
        self._fast[name] = recent
        if len(recent) >= self.max_fast_crashes:
            return None
        return min(self.max_delay, self.first_delay * 2 ** (len(recent) - 1))
