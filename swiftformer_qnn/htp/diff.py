"""Two compiles compared, figure by figure (pure): the one diff the cross-version comparison,
`gate structure` and `report --compare` read.

The figures are the records' own (`record.FIGURES`), so a figure added there is compared by
every reader; op types are compared where both compiles traced their ops (QNN 2.47 writes no
op trace), op names where the caller read them from the traces (`record.traced_op_names`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from .record import FIGURES, CompileRecord, Figure

IDENTITY = ("variant", "precision", "soc", "input_shape")


class FigureDelta(BaseModel):
    """One figure of two compiles; None where that compile does not have it (no op trace)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str  # a figure's label ("HTP ops", "layout ops", ...) or a QNN op type ("Conv2d")
    a: int | None
    b: int | None
    delta: int | None  # b - a

    @classmethod
    def of(cls, metric: str, a: int | None, b: int | None) -> FigureDelta:
        return cls(metric=metric, a=a, b=b, delta=None if a is None or b is None else b - a)


@dataclass(frozen=True)
class CompileDiff:
    """What changed from compile `a` to compile `b`."""

    figures: tuple[tuple[Figure, FigureDelta], ...]  # every `FIGURES` entry, in its order
    op_types: tuple[FigureDelta, ...]  # every op type of either, biggest |delta| first, then by name
    traced: bool  # both compiles traced their ops, so op types compare
    ops_added: tuple[str, ...] | None  # HTP op names only `b` built; None: names not given
    ops_removed: tuple[str, ...] | None  # HTP op names only `a` built
    differ: tuple[tuple[str, object, object], ...]  # (field, a, b) of the identity both name, where it differs

    def figure(self, name: str) -> FigureDelta:
        return next(d for f, d in self.figures if f.name == name)

    @property
    def changed_op_types(self) -> list[FigureDelta] | None:
        """The op types whose count changed; None where one compile has no op trace."""
        return [d for d in self.op_types if d.delta] if self.traced else None

    def describe_op_types(self, limit: int = 4) -> str:
        """`Conv2d 300 -> 310, Gelu 100 -> 96, +2 more`, or "" (nothing changed, or not traced)."""
        changed = self.changed_op_types or []
        shown = ", ".join(f"{d.metric} {d.a} -> {d.b}" for d in changed[:limit])
        return shown + (f", +{len(changed) - limit} more" if len(changed) > limit else "")


def _identity(r: CompileRecord, key: str) -> object:
    return r.soc if key == "soc" else getattr(r.model, key)


def diff_compiles(a: CompileRecord, b: CompileRecord, names_a: Sequence[str] | None = None,
                  names_b: Sequence[str] | None = None) -> CompileDiff:
    """`b` against `a`. An op type one graph lacks counts 0 there when its op trace exists."""
    types_a, types_b = a.htp_op_types, b.htp_op_types
    op_types = [FigureDelta.of(t, None if types_a is None else types_a.get(t, 0),
                               None if types_b is None else types_b.get(t, 0))
                for t in sorted(set(types_a or {}) | set(types_b or {}))]
    op_types.sort(key=lambda d: (-abs(d.delta or 0), d.metric))
    named = names_a is not None and names_b is not None
    before, after = Counter(names_a or ()), Counter(names_b or ())
    differ = [(k, _identity(a, k), _identity(b, k)) for k in IDENTITY]
    return CompileDiff(
        figures=tuple((f, FigureDelta.of(f.label, f.value(a), f.value(b))) for f in FIGURES),
        op_types=tuple(op_types),
        traced=types_a is not None and types_b is not None,
        ops_added=tuple(sorted((after - before).elements())) if named else None,
        ops_removed=tuple(sorted((before - after).elements())) if named else None,
        differ=tuple((k, x, y) for k, x, y in differ if x is not None and y is not None and x != y),
    )
