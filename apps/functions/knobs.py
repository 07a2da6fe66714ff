"""A function's numeric knobs: one definition of each (name, range, default, words), used by
the model's validators, the API serializer, the service's validation, the settings page and
stratus.yaml (``apps/pipelines/pipeline_config.py``). The knobs mean the same on every
execution backend; the engine reads them from a version's config snapshot.

Every entry point refuses a value outside the range with the same words:
``Must be between <min> and <max>.`` (stratus.yaml: ``<where> must be between <min> and <max>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator


@dataclass(frozen=True)
class Knob:
    name: str
    label: str
    unit: str
    min: int
    max: int
    default: int
    help: str

    @property
    def range_message(self) -> str:
        return f"Must be between {self.min} and {self.max}."

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.min <= value <= self.max


KNOBS: tuple[Knob, ...] = (
    Knob("memory_mb", "Memory", "MB", 128, 3072, 256, "per instance"),
    Knob("timeout_s", "Timeout", "s", 1, 900, 30, "per invocation"),
    Knob("instance_concurrency", "Concurrency", "requests", 1, 1000, 1, "in flight per instance"),
    Knob("min_instances", "Min instances", "", 0, 1000, 0, "kept warm (0: scale to zero)"),
    Knob("max_instances", "Max instances", "", 1, 1000, 10, "per environment"),
    Knob("idle_timeout_s", "Idle timeout", "s", 1, 86400, 300, "before an idle instance stops"),
    # A tmpfs: it lives in memory and counts against the org's memory quota.
    Knob("ephemeral_storage_mb", "Ephemeral storage", "MB", 16, 10240, 128, "size of the instance's private /tmp"),
)
KNOB: dict[str, Knob] = {knob.name: knob for knob in KNOBS}

# Everything of a function's configuration (knobs and the rest), in the API's order; a
# version's config snapshot holds these (but the description).
CONFIG_FIELDS = (
    "description",
    "runtime",
    "handler",
    "kind",
    "event_format",
    "routes",
    "memory_mb",
    "timeout_s",
    "ephemeral_storage_mb",
    "env",
    "min_instances",
    "max_instances",
    "instance_concurrency",
    "idle_timeout_s",
)


def model_validators(name: str) -> list[Any]:
    """The Django validators of a knob's model field."""
    knob = KNOB[name]
    return [MinValueValidator(knob.min), MaxValueValidator(knob.max)]
