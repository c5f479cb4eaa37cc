"""Gate rules: thresholds, statistic and per-metric overrides, from pyproject and flags.

`[tool.swiftformer-qnn.gate]` in the nearest `pyproject.toml` (the working directory or
its nearest parent that has one) sets the defaults; command-line flags override them.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.errors import UsageError

Statistic = Literal["median", "mean", "min"]
STATISTICS: tuple[str, ...] = ("median", "mean", "min")
PYPROJECT_TABLE = ("tool", "swiftformer-qnn", "gate")


class _Rules(BaseModel):
    # No NaN or infinity, from pyproject or the command line: a NaN threshold or floor compares
    # false with every change, an infinite one passes every change, and either way the gate cannot fail.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MetricRule(_Rules):
    """An override for the metrics whose id matches a pattern (`stage3.block9`, `stage*.downsample`)."""

    relative_threshold: float | None = Field(default=None, ge=0)
    absolute_floor_us: float | None = Field(default=None, ge=0)


class StructureRules(_Rules):
    """The device-free gate on compile manifests."""

    max_op_count_growth: float = Field(default=0.05, ge=0)  # relative growth of the HTP op count
    max_context_growth: float = Field(default=0.05, ge=0)  # relative growth of the context binary


class GateRules(_Rules):
    relative_threshold: float = Field(default=0.05, ge=0)
    absolute_floor_us: float = Field(default=20.0, ge=0)
    # Estimate profiles (QNN's HTP estimator) are deterministic: the same graph and QNN give the
    # same figure, so any change is real and a small threshold with no floor catches it.
    estimate_threshold: float = Field(default=0.02, ge=0)
    estimate_floor_us: float = Field(default=0.0, ge=0)
    statistic: Statistic = "median"
    # Two-sided level of the bootstrap interval; a change counts only when the interval
    # excludes zero, so at most (1 - confidence) / 2 of pure-noise comparisons can fail.
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    resamples: int = Field(default=2000, ge=200, le=100_000)
    # Below this many samples on either side the spread is not estimated (a bootstrap of
    # two or three values says nothing); the metric is gated on thresholds alone.
    min_samples: int = Field(default=5, ge=2)
    fail_on_missing: bool = False  # a block present on one side only fails the gate
    seed: int = 0  # of the bootstrap: the same inputs always give the same verdict
    blocks: dict[str, MetricRule] = Field(default_factory=dict)
    structure: StructureRules = Field(default_factory=StructureRules)

    def for_estimates(self) -> GateRules:
        """These rules as they gate estimate profiles: the estimate threshold and floor as defaults."""
        return self.model_copy(update={"relative_threshold": self.estimate_threshold,
                                       "absolute_floor_us": self.estimate_floor_us})

    def rule_for(self, metric: str) -> tuple[float, float]:
        """(relative threshold, absolute floor in us) for one metric id.

        An exact id wins over a pattern; among patterns the first one written wins. Each
        field falls back separately, so an override may set only one of them.
        """
        matches = [self.blocks[metric]] if metric in self.blocks else []
        matches += [r for pat, r in self.blocks.items() if pat != metric and fnmatch.fnmatchcase(metric, pat)]
        rel = next((r.relative_threshold for r in matches if r.relative_threshold is not None), None)
        floor = next((r.absolute_floor_us for r in matches if r.absolute_floor_us is not None), None)
        return (
            self.relative_threshold if rel is None else rel,
            self.absolute_floor_us if floor is None else floor,
        )


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest `pyproject.toml` at or above `start` (default: the working directory)."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it as TOML ({exc}).") from None


def _rules_error(origin: str, exc: ValidationError) -> UsageError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(table)"
    return UsageError(f"{origin}: gate setting {where}: {first['msg']}.",
                      hint="Give it a value its option's --help (or docs/ci.md, for pyproject) describes.")


def load_rules(pyproject: Path | None = None, *, search_from: Path | None = None) -> tuple[GateRules, Path | None]:
    """Rules from `pyproject` (or the nearest one above `search_from`), and the file read.

    No pyproject, or one without the gate table, gives the built-in defaults. An unknown
    key is an error rather than silently ignored: a typo in a threshold must not pass CI.
    """
    path = Path(pyproject) if pyproject else find_pyproject(search_from)
    if path is None:
        return GateRules(), None
    if not path.is_file():
        raise UsageError(f"{path}: no such pyproject file." if not path.exists() else f"{path} is not a file.",
                         hint="Pass --config the pyproject.toml that holds [tool.swiftformer-qnn.gate].")
    table: Any = _read_toml(path)
    for key in PYPROJECT_TABLE:
        table = table.get(key, {}) if isinstance(table, dict) else {}
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.swiftformer-qnn.gate] must be a table.")
    try:
        return GateRules.model_validate(table), path
    except ValidationError as exc:
        raise _rules_error(f"{path} [tool.swiftformer-qnn.gate]", exc) from None


def parse_fraction(text: str, *, flag: str) -> float:
    """`5%` or `0.05` -> 0.05. A bare number of 1 or more is refused: `5` is surely 5%, not 500%."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: not a number.", hint="Write 5% or 0.05.") from None
    if not math.isfinite(value):
        raise UsageError(f"{flag} {text!r}: not a finite number.", hint="Write 5% or 0.05.")
    if value < 0 or (value >= 1 and not raw.endswith("%")):
        raise UsageError(f"{flag} {text!r}: expected a fraction below 1 or a percentage.", hint="Write 5% or 0.05.")
    return value


def parse_overrides(values: list[str], field: str, *, flag: str) -> dict[str, float]:
    """`PATTERN=NUMBER` flag values into {pattern: number}; thresholds also take `PATTERN=10%`."""
    out: dict[str, float] = {}
    example = f"{flag} 'stage3.block*=10%'" if field == "relative_threshold" else f"{flag} head=50"
    for raw in values:
        pattern, sep, number = raw.partition("=")
        if not sep or not pattern.strip():
            raise UsageError(f"{flag} {raw!r}: expected PATTERN=NUMBER.", hint=f"For example {example}.")
        if field == "relative_threshold":
            value = parse_fraction(number, flag=f"{flag} {pattern.strip()}=")
        else:
            try:
                value = float(number)
                if value < 0:
                    raise ValueError
            except ValueError:
                raise UsageError(f"{flag} {raw!r}: expected a non-negative number of microseconds.",
                                 hint=f"For example {example}.") from None
        out[pattern.strip()] = value
    return out


def with_flags(
    rules: GateRules,
    *,
    relative_threshold: float | None = None,
    absolute_floor_us: float | None = None,
    statistic: str | None = None,
    confidence: float | None = None,
    fail_on_missing: bool | None = None,
    block_thresholds: dict[str, float] | None = None,
    block_floors: dict[str, float] | None = None,
    structure_growth: float | None = None,
) -> GateRules:
    """Flags over pyproject: a flag given replaces the file's value; overrides merge by pattern.

    `relative_threshold` and `absolute_floor_us` (`--threshold`, `--floor-us`) set the estimate
    profiles' threshold and floor as well: a flag says what the user wants gated now.

    `structure_growth` (`--threshold` of `gate structure`) sets both growth limits of the
    structural gate: the HTP op count's and the context binary's.
    """
    data = rules.model_dump()
    if structure_growth is not None:
        data["structure"]["max_op_count_growth"] = structure_growth
        data["structure"]["max_context_growth"] = structure_growth
    for key, value in (
        ("relative_threshold", relative_threshold),
        ("absolute_floor_us", absolute_floor_us),
        ("estimate_threshold", relative_threshold),
        ("estimate_floor_us", absolute_floor_us),
        ("statistic", statistic),
        ("confidence", confidence),
        ("fail_on_missing", fail_on_missing),
    ):
        if value is not None:
            data[key] = value
    # Flag patterns go first so that, among patterns, a flag wins over the file.
    from_file = {k: dict(v) for k, v in data["blocks"].items()}
    blocks: dict[str, dict] = {}
    for field, given in (("relative_threshold", block_thresholds), ("absolute_floor_us", block_floors)):
        for pattern, value in (given or {}).items():
            blocks.setdefault(pattern, from_file.pop(pattern, {}))[field] = value
    blocks.update(from_file)
    data["blocks"] = blocks
    try:
        return GateRules.model_validate(data)
    except ValidationError as exc:
        raise _rules_error("command line", exc) from None
