"""Every runnable code block in README.md and docs/ runs, with short budgets injected.

A block is runnable when its fence says ``python`` or ``bash``. A block no test can run
(it needs GPUs or a Ray cluster, or it is what CI itself runs) carries the marker
``<!-- not-run: REASON -->`` on the line before its fence; a marker needs a reason.

* Python blocks run each in a fresh interpreter, so each must be complete on its own
  (as a user who copies one block would run it). A Python block whose first line is a
  comment naming a file (``# myenvs.py``) is that file: it is written into the working
  directory for the blocks after it, not run.
* Bash blocks run command by command in bash, with ``rl`` on the PATH; every command of an
  unmarked bash block must be an ``rl`` command.
* All documents share one working directory, which holds ``tuned_examples/``: a run that
  one block makes is there for the next. A path with ``...`` in it
  (``runs/ppo_CartPole-v1_.../checkpoint_000050``) stands for the newest path that the
  blocks before it made and that matches it (``...`` and the checkpoint number as
  wildcards). A command or Python block already run (same text) is not run again.

Budgets: ``rl train`` gets ``--stop-iters 1`` (its own stop flags stay; whichever holds
first stops it), ``rl evaluate`` ``--episodes 2``, ``rl bench`` ``--seeds 0
--stop-iters 1``; in Python, every ``env_steps_total`` stop value becomes 2048.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"<!--\s*not-run:(.*?)-->")
RUNNABLE = ("python", "bash")
FILE_BLOCK = re.compile(r"^# ([\w./-]+\.py)\s*$")
TIMEOUT_S = 300
PY_BUDGET = 2048


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    not_run: str | None  # the marker's reason, or None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        marker = MARKER.search(lines[i - 1]) if i else None
        blocks.append(Block(path, i + 1, m.group(1), "\n".join(lines[i + 1 : end]),
                            marker.group(1).strip() if marker else None))
        i = end + 1
    return blocks


def bash_commands(code: str) -> list[list[str]]:
    """The commands of a bash block as token lists (continuations joined, comments cut)."""
    joined = re.sub(r"\\\n", " ", code)
    return [tokens for line in joined.splitlines()
            if (tokens := shlex.split(line, comments=True))]


class Session:
    """The shared working directory, and what already ran in it."""

    def __init__(self, work: Path):
        self.work = work
        self.done: set[str] = set()
        bin_dir = os.path.dirname(sys.executable)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        (work / "tuned_examples").symlink_to(ROOT / "tuned_examples")

    def resolve(self, token: str, where: str) -> str:
        if "..." not in token:
            return token
        pattern = re.sub(r"checkpoint_\d+", "checkpoint_*", token.replace("...", "*"))
        matches = sorted(glob.glob(str(self.work / pattern)), key=os.path.getmtime)
        assert matches, (f"{where}: {token!r} ({pattern}) matches nothing the blocks before "
                         "it made; put the command that makes it first")
        return os.path.relpath(matches[-1], self.work)

    def run_command(self, tokens: list[str], where: str) -> None:
        tokens = [self.resolve(t, where) for t in tokens] + budget(tokens)
        command = " ".join(t if re.search(r"[*?]", t) else shlex.quote(t) for t in tokens)
        if command in self.done:
            return
        out = subprocess.run(["bash", "-c", command], cwd=self.work, env=self.env,
                             capture_output=True, text=True, timeout=TIMEOUT_S)
        # --as-test exits 1 when the (here: cut) budget did not reach the stop reward.
        allowed = (0, 1) if "--as-test" in tokens else (0,)
        assert out.returncode in allowed, (f"{where}: `{command}` exited {out.returncode}\n"
                                           f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        self.done.add(command)

    def write_file(self, code: str) -> None:
        name = FILE_BLOCK.match(code.splitlines()[0]).group(1)
        (self.work / name).write_text(code + "\n")

    def run_python(self, code: str, where: str) -> None:
        code = re.sub(r"""(["']?env_steps_total["']?\s*[:=]\s*)[\d_]+""",
                      rf"\g<1>{PY_BUDGET}", code)
        if code in self.done:
            return
        out = subprocess.run([sys.executable, "-c", code], cwd=self.work, env=self.env,
                             capture_output=True, text=True, timeout=TIMEOUT_S)
        assert out.returncode == 0, (f"{where}: the Python block failed\n"
                                     f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        self.done.add(code)


def budget(tokens: list[str]) -> list[str]:
    """The flags that keep an ``rl`` command short (see the module docstring)."""
    if tokens[:1] != ["rl"] or len(tokens) < 2:
        return []
    command = tokens[1]
    if command == "train" and "--help-config" not in tokens:
        return ["--stop-iters", "1"]
    if command == "evaluate":
        return ["--episodes", "2"]
    if command == "bench":
        return ["--seeds", "0", "--stop-iters", "1"]
    return []


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Session:
    return Session(tmp_path_factory.mktemp("docs_examples"))


def test_every_marker_gives_a_reason_and_every_runnable_bash_block_is_rl():
    for path in DOCUMENTS:
        for block in read_blocks(path):
            if block.not_run is not None:
                assert block.not_run, f"{block.where}: not-run marker without a reason"
                assert block.lang in RUNNABLE, f"{block.where}: only code blocks are run"
            elif block.lang == "bash":
                for tokens in bash_commands(block.code):
                    assert tokens[0] == "rl", (
                        f"{block.where}: `{' '.join(tokens)}` is not an rl command; mark the "
                        "block <!-- not-run: REASON --> if no test can run it")


def test_some_blocks_run():
    runnable = [b for p in DOCUMENTS for b in read_blocks(p)
                if b.lang in RUNNABLE and b.not_run is None]
    assert len(runnable) >= 10  # the test cannot pass by finding nothing


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_document_examples_run(path: Path, session: Session):
    for block in read_blocks(path):
        if block.not_run is not None or block.lang not in RUNNABLE:
            continue
        if block.lang == "python" and FILE_BLOCK.match(block.code.splitlines()[0]):
            session.write_file(block.code)
        elif block.lang == "python":
            session.run_python(block.code, block.where)
        else:
            for tokens in bash_commands(block.code):
                session.run_command(tokens, block.where)
