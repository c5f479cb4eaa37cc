"""Every shell example in README.md and docs/ runs as written, page by page, in the order written,
in a fresh directory: a copy of the clone's tracked files with no build/ (what a new user has
after `git clone`). The pages of one test run share a stage cache that is new for the run, so an
export two pages both make (L1 at 224: README.md and docs/ci.md) is computed once.

A comment before a block says what it needs (docs/development.md lists them):
`<!-- example: token -->` / `<!-- example: phone -->`: each command must stop with exactly one
line on stderr and exit 2, run without an AI Hub token (an empty home) or without adb;
`<!-- example: install -->` and `<!-- example: not-run -->`: not run here (.ci/run runs the
README's install-and-test command in a brand-new venv; the nox sessions are the test suite).
A command ending in `# exit N` must exit with N, every other one with 0.

Pages whose examples export, compile or install toolchains run in the slow tier (an L1 export
at 224 is about a minute of CPU); the others, and the check that every page's markers parse,
run in the default tier.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from toolchain_fakes import user_toolchains_root

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
NEEDS = {"token", "phone", "install", "not-run"}
MARKER = re.compile(r"^\s*<!-- example: ([\w-]+) -->\s*$")
EXPECTED_EXIT = re.compile(r"#\s*exit (\d+)")
# A command that builds something: its page runs in the slow tier.
BUILDS = re.compile(r"swiftformer-qnn (export|compile)\b|swiftformer-qnn profile(?!.*--from)(?! import)|"
                    r"toolchains (install|compare)|--qnn (all|\d)")


@dataclass(frozen=True)
class Command:
    page: str
    line: int  # 1-based line of the command in its page
    text: str  # continuation lines joined, as bash reads them
    needs: str | None  # token, phone, install, not-run, or None: runs here
    expected_exit: int


def commands(page: Path, root: Path = REPO) -> list[Command]:
    """The commands of every ```bash block of `page`, in order, with what their block needs."""
    lines = page.read_text().splitlines()
    out: list[Command] = []
    needs: str | None = None
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        if marker:
            needs = marker.group(1)
            assert needs in NEEDS, f"{page.name}:{i + 1}: unknown example marker {needs!r}"
        elif lines[i].strip() == "```bash":
            i += 1
            while lines[i].strip() != "```":
                start, text = i, lines[i].strip()
                while text.endswith("\\"):
                    i += 1
                    text = text[:-1] + " " + lines[i].strip()
                if text and not text.startswith("#"):
                    found = EXPECTED_EXIT.search(text)
                    out.append(Command(str(page.relative_to(root)), start + 1, text, needs,
                                       int(found.group(1)) if found else 0))
                i += 1
            needs = None
        elif lines[i].strip().startswith("```"):
            needs = None
        i += 1
    return out


def builds(page: Path) -> bool:
    return any(c.needs is None and BUILDS.search(c.text) for c in commands(page))


def fresh_clone(root: Path) -> Path:
    """The tracked files of the clone (the working copy's version of each), without build/."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def run_page(page: Path, tmp_path: Path, cache: Path) -> list[str]:
    """Run the page's examples; returns the failures (empty when every command did as required)."""
    clone = fresh_clone(tmp_path / "clone")
    home = tmp_path / "home"
    home.mkdir()
    bindir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QAIHUB", "QNN_SDK_ROOT", "ANDROID_"))}
    env.update(HOME=str(home), SWIFTFORMER_QNN_CACHE=str(cache), COLUMNS="80",
               # The toolchains the slow tier's other tests use: installed once, not per page.
               SWIFTFORMER_QNN_TOOLCHAINS=str(user_toolchains_root()), PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}")
    failures = []
    for c in commands(page):
        if c.needs in ("install", "not-run"):
            continue
        run_env = dict(env)
        if c.needs == "phone":
            run_env["PATH"] = str(bindir)  # the venv's own programs, no adb
        done = subprocess.run(["bash", "-c", c.text], cwd=clone, env=run_env, capture_output=True, text=True,
                              timeout=1800)
        where = f"{c.page}:{c.line}: {c.text}"
        if c.needs in ("token", "phone"):
            said = [line for line in done.stderr.splitlines() if line.strip()]
            if done.returncode != 2 or len(said) != 1 or not said[0].startswith("error:"):
                failures.append(f"{where}\n  needs a {c.needs}: expected one 'error:' line and exit 2, got exit "
                                f"{done.returncode}, stderr:\n{done.stderr[-2000:]}")
        elif done.returncode != c.expected_exit:
            failures.append(f"{where}\n  exit {done.returncode} (expected {c.expected_exit}); stderr:\n"
                            f"{done.stderr[-3000:]}\nstdout:\n{done.stdout[-1500:]}")
    return failures


def _page_param(page: Path):
    marks = [pytest.mark.slow] if builds(page) else []
    return pytest.param(page, marks=marks, id=str(page.relative_to(REPO)))


RUNNABLE = [p for p in PAGES if any(c.needs not in ("install", "not-run") for c in commands(p))]


@pytest.fixture(scope="session")
def pages_cache(tmp_path_factory) -> Path:
    """One stage cache for every page of a test run (new each run): the pages that export the same
    request (L1 at 224 in the README and docs/ci.md) share its stages instead of computing them again;
    each page still starts from a fresh directory with no build/."""
    return tmp_path_factory.mktemp("pages-stage-cache")


@pytest.mark.parametrize("page", [_page_param(p) for p in RUNNABLE])
def test_the_examples_of_a_page_run_as_written(page, tmp_path, pages_cache):
    failures = run_page(page, tmp_path, pages_cache)
    assert not failures, "\n\n".join(failures)


def test_the_collector_reads_blocks_markers_continuations_and_expected_exits(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "text", "```bash", "swiftformer-qnn variants   # list", "```",
        "<!-- example: token -->", "```bash", "swiftformer-qnn profile --device x \\", "    --from build/y", "```",
        "```toml", "a = 1", "```",
        "```bash", "# a comment line", "python x.py   # exit 1, reproduced", "```",
    ]))  # fmt: skip
    got = commands(page, tmp_path)
    assert [(c.line, c.text, c.needs, c.expected_exit) for c in got] == [
        (3, "swiftformer-qnn variants   # list", None, 0),
        (7, "swiftformer-qnn profile --device x  --from build/y", "token", 0),
        (15, "python x.py   # exit 1, reproduced", None, 1),
    ]


def test_every_page_has_examples_the_tiers_run():
    """The README's main job and no-token path are examples that run (in the slow tier), its
    AI Hub and phone lines are checked to fail cleanly, and every page's markers parse."""
    readme = commands(REPO / "README.md")
    runs = [c.text for c in readme if c.needs is None]
    assert "swiftformer-qnn export --variant l1" in runs
    assert any(t.startswith("swiftformer-qnn profile --device estimate") for t in runs)
    assert {c.needs for c in readme} >= {None, "token", "phone", "install"}
    assert builds(REPO / "README.md") and not builds(REPO / "docs" / "reports.md")
    for page in PAGES:
        commands(page)  # raises on an unknown marker
