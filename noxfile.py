"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s bench` (and the slower ones below).

Every session installs torch from constraints.txt: an unpinned torch resolves to a CUDA
build with several GB of extras.
"""

from __future__ import annotations

import nox

# virtualenv + pip, not uv: pip is what finds the local CPU torch wheel on these machines.
nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]
CONSTRAINTS = ("-c", "constraints.txt")


def install_project(session: nox.Session, extras: str = "test") -> None:
    session.install(*CONSTRAINTS, "torch==2.13.0")
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The default test tier (what .ci/run and the README run)."""
    install_project(session)
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Full-size runs: L1 at 224 end to end, several QNN toolchains."""
    install_project(session)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "swiftformer_qnn", "tests", "noxfile.py", "setup.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory of the main job against straight-line scripts, in one run -> JSON. Extra
    arguments go to the script (e.g. `-- OUT.json --against ../old-checkout` times an earlier
    tree of the package in the same run)."""
    install_project(session)
    args = list(session.posargs)
    out = args.pop(0) if args and not args[0].startswith("-") else "bench-results/bench.json"
    session.run("python", "tests/bench/run_bench.py", out, *args)


@nox.session
def estimate_validation(session: nox.Session) -> None:
    """QNN's HTP estimate against published Galaxy S23 device times: ResNet18, MobileNetV3-Large,
    EfficientFormer-L1, LeViT-128S, ConvNeXt-Tiny (timm) and SwiftFormer-L1, built one at a time
    -> OUT_DIR/estimate-validation.{json,md}. Extra arguments go to the script (e.g. --qnn 2.47,2.50)."""
    install_project(session)
    args = list(session.posargs)
    out = args.pop(0) if args and not args[0].startswith("-") else "profiles/reports/estimate-validation"
    session.run("python", "tests/bench/estimate_validation.py", out, *args)


@nox.session
def qnn_matrix(session: nox.Session) -> None:
    """Every QNN toolchain: install them all (into the user cache, reused by later runs), load
    each onnxruntime pairing, and compile the same QDQ models with every QNN version (XS at 64,
    L1 at 224; the L1 comparison table is printed)."""
    install_project(session)
    session.run("swiftformer-qnn", "toolchains", "install", "all")
    session.run("swiftformer-qnn", "toolchains", "list")
    session.run(
        "pytest", "-m", "slow", "-s", "tests/test_toolchains.py", "tests/test_cross_version.py", *session.posargs
    )
