"""The input contract: which fields a penguin record has, their types, and their allowed values.

Both architectures validate against this one definition, and the training code reads the same
field lists, so a field added here is added everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGET = "species"
CLASSES: tuple[str, ...] = ("Adelie", "Chinstrap", "Gentoo")


@dataclass(frozen=True)
class NumericField:
    name: str
    minimum: float
    maximum: float
    description: str
    integer: bool = False


@dataclass(frozen=True)
class CategoricalField:
    name: str
    categories: tuple[str, ...]
    description: str


# Bounds are generous physical limits, not the training range: they reject typos such as grams
# sent as kilograms' worth of digits, while leaving the model to judge unusual but real birds.
NUMERIC_FIELDS: tuple[NumericField, ...] = (
    NumericField("bill_length_mm", 0.0, 200.0, "Bill (culmen) length in millimetres"),
    NumericField("bill_depth_mm", 0.0, 100.0, "Bill (culmen) depth in millimetres"),
    NumericField("flipper_length_mm", 0.0, 400.0, "Flipper length in millimetres"),
    NumericField("body_mass_g", 0.0, 20000.0, "Body mass in grams"),
    NumericField("year", 1900, 2100, "Year the bird was observed", integer=True),
)
CATEGORICAL_FIELDS: tuple[CategoricalField, ...] = (
    CategoricalField(
        "island", ("Biscoe", "Dream", "Torgersen"), "Island in the Palmer Archipelago"
    ),
    CategoricalField("sex", ("female", "male"), "Sex of the bird"),
)

NUMERIC_NAMES: tuple[str, ...] = tuple(f.name for f in NUMERIC_FIELDS)
CATEGORICAL_NAMES: tuple[str, ...] = tuple(f.name for f in CATEGORICAL_FIELDS)
FIELD_NAMES: frozenset[str] = frozenset(NUMERIC_NAMES + CATEGORICAL_NAMES)
# A missing category becomes a category of its own: the model can learn that "sex not recorded"
# carries information, and the same value can never collide with a real category name.
MISSING_CATEGORY = "unknown"


def input_schema() -> dict:
    """A JSON Schema of one instance, published by `GET /v1/model` so clients can self-check."""
    properties: dict[str, dict] = {}
    for field in NUMERIC_FIELDS:
        properties[field.name] = {
            "type": ["integer" if field.integer else "number", "null"],
            "minimum": field.minimum,
            "maximum": field.maximum,
            "description": field.description,
        }
    for category in CATEGORICAL_FIELDS:
        properties[category.name] = {
            "enum": [*category.categories, None],
            "description": category.description,
        }
    return {
        "type": "object",
        "description": "One penguin. Every field is required; null marks a missing measurement.",
        "properties": properties,
        "required": sorted(FIELD_NAMES),
        "additionalProperties": False,
    }
