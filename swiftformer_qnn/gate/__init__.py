"""CI latency regression gates: compare profiles (or compile manifests) and return a verdict.

Pure library: it raises typed errors and never prints; `swiftformer-qnn gate latency|structure|accept`
renders it (`cli/gate_outputs.py`: Markdown, JUnit, JSON).
"""

from __future__ import annotations

from .baseline import (
    BASELINES_DIR,
    BaselineRecord,
    BaselineUpdate,
    baseline_key,
    structure_key,
    update_baseline,
    update_structure_baseline,
)
from .profile_gate import block_samples, gate_paths, gate_profiles, model_samples
from .rules import (
    GateRules,
    MetricRule,
    StructureRules,
    find_pyproject,
    load_rules,
    parse_fraction,
    parse_overrides,
    with_flags,
)
from .stats import Samples, bootstrap, compare, gate_samples
from .structure import check_disjoint, gate_manifests, gate_structure
from .verdict import MODEL_METRIC, ChangeInterval, GateVerdict, Method, MetricResult, MetricStatus, SideInfo

__all__ = [
    "BASELINES_DIR", "BaselineRecord", "BaselineUpdate", "ChangeInterval", "GateRules", "GateVerdict", "MODEL_METRIC", "Method", "MetricResult", "MetricRule",
    "MetricStatus", "Samples", "SideInfo", "StructureRules", "baseline_key", "block_samples", "bootstrap",
    "check_disjoint", "compare", "find_pyproject", "gate_manifests", "gate_paths", "gate_profiles", "gate_samples",
    "gate_structure", "load_rules", "model_samples", "parse_fraction", "parse_overrides", "structure_key", "update_baseline",
    "update_structure_baseline", "with_flags",
]
