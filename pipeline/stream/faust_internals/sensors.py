"""Faust's sensors, replaced for the join worker (faust-streaming 0.15.3).

`QuietSensors` is installed by `pipeline.stream.app.make_app` when an app is made; its hooks then
run for every record. `SendFailures` is added by `create_app` and read before every input commit.
Both subclass Faust classes and `QuietSensors` reads `SensorDelegate._sensors` (listed in
`pipeline.stream.faust_internals.PRIVATE_ATTRIBUTES`, checked by tests/unit/test_faust_internals.py).
"""
from __future__ import annotations

from typing import Any

import faust
from faust.sensors import Monitor, SensorDelegate

from pipeline.core.errors import first_line


class QuietSensors(SensorDelegate):
    """Faust's sensor hooks as no-ops, and no Monitor: they run several times per record (message
    in, stream in/out, send initiated/completed, commit...) and nothing here reads them. Only
    `on_send_error` reaches the sensors added here (`SendFailures`)."""

    def add(self, sensor: Any) -> None:
        if not isinstance(sensor, Monitor):
            super().add(sensor)

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        for sensor in self._sensors:
            sensor.on_send_error(producer, exc, state)


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _state(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"quiet": True}  # Faust warns of a rebalance without sensor state


for _name in dir(SensorDelegate):
    if _name.startswith("on_") and _name != "on_send_error":
        setattr(QuietSensors, _name, _state if _name.startswith("on_rebalance") else _noop)


class SendFailures(faust.Sensor):
    """Records Faust could not deliver (Kafka away for longer than the producer keeps them).

    Faust only logs those. Their input offsets must then never be committed: the worker stops
    instead (exit 1), and its restart processes the input again from the last commit."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.count = 0
        self.last = ""

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        self.count += 1
        self.last = first_line(exc, 200)
