"""The API's models of what the engine answers are derived from the engine's own types, never re-declared."""

from __future__ import annotations

import dataclasses

from peng4nn.analyzer import Decision, Reason
from peng4nn.jobs import DecisionPublic, IterationPublic, ResultPublic
from peng4nn.results import IterationEvent, TrainResult


def names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_the_wire_models_have_the_engine_types_fields_in_order():
    assert list(DecisionPublic.model_fields) == names(Decision)
    own = [n for n in names(IterationEvent) if n != "decision"]
    assert list(IterationPublic.model_fields) == own + [n for n in names(Decision) if n not in own]
    assert list(ResultPublic.model_fields) == [n for n in names(TrainResult) if n != "events"]
    assert DecisionPublic.model_fields["prediction"].description  # descriptions travel with the fields


def test_a_decision_round_trips_through_the_wire():
    decision = Decision(epoch=2.5, prediction=71.2, a=71.2, b=1.3, c=0.4, converged=True, stop=True,
                        estimate=71.2, reason=Reason.CONVERGED, interval=(69.0, 73.5))
    wire = DecisionPublic.model_validate(decision.to_dict()).model_dump(mode="json")
    assert Decision.from_dict(wire) == decision


def test_an_iteration_event_is_what_the_iteration_model_reads():
    decision = Decision(epoch=1.0, prediction=None, a=None, b=None, c=None, converged=False, stop=False,
                        estimate=None, reason=Reason.TOO_FEW_POINTS)
    event = IterationEvent(2, 1.0, 0.9, 40.0, 1.1, decision, elapsed_s=3.0, engine_s=0.01, iteration_s=1.4, lr=0.1)
    data = event.to_dict()
    assert set(data) == set(IterationPublic.model_fields)
    parsed = IterationPublic.model_validate(data)
    assert parsed.reason is Reason.TOO_FEW_POINTS and parsed.lr == 0.1 and parsed.iteration == 2
    result = TrainResult(estimate=40.0, converged=False, stop_epoch=1.0, epochs_trained=1.0, reason="max_epochs",
                         final_val_acc=40.0, events=[event])
    payload = {k: v for k, v in result.to_dict().items() if k != "events"}
    assert ResultPublic.model_validate(payload).model_dump() == payload
