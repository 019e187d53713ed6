"""Every runnable code block in README.md and docs/ runs, with short budgets injected.

A block is runnable when its fence says ``python`` or ``bash``. A block no test can run
(it needs GPUs or a Ray cluster, or it is what CI itself runs) carries the marker
``<!-- not-run: REASON -->`` on the line before its fence; a marker needs a reason.
Other fences say ``text``, ``yaml``, ``json`` or ``mermaid``, or nothing (layouts, such as
a directory tree); ``sh``, ``console``, ``py`` and the like are refused, so that no code
escapes the test by its fence's name. Fences indented inside a list count too.

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

Nothing is left behind: a Python block must stop what it started (``with config.build()
as algo:``, or ``algo.stop()``) before it ends, which a check appended to it asserts (no
live actor process, no segment of its driver in /dev/shm), so no block leans on the
runtime's atexit hook. After every block or command, no process of its session (each
runs as the leader of a session of its own) is alive, and no /dev/shm segment of its
driver is left (a bash command is exec'ed, so its pid is the driver's). Both checks are
``tests.conftest.assert_no_leftovers``, which the ``runtime`` fixture uses after
``shutdown()``.

Budgets: ``rl train`` gets ``--stop-iters 1`` (its own stop flags stay; whichever holds
first stops it), ``rl evaluate`` ``--episodes 2``, ``rl bench`` ``--seeds 0
--stop-iters 1``, ``rl tune`` ``--trials 1``; in Python, every ``env_steps_total`` stop value (``100_000``, ``1e5``, ``"100k"``) becomes
2048.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from rl.runtime import shm
from tests.conftest import assert_no_leftovers

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(\s*)```\s*(\S*)\s*$")
MARKER = re.compile(r"<!--\s*not-run:(.*?)-->")
RUNNABLE = ("python", "bash")
NOT_CODE = ("text", "yaml", "json", "mermaid", "")
# Fence names that are code the test would skip: they are to be written as bash or python.
RENAME = {"sh": "bash", "shell": "bash", "console": "bash", "zsh": "bash", "shell-session":
          "bash", "py": "python", "python3": "python", "pycon": "python"}
# A block with no language that starts like code (a command, an import).
LOOKS_LIKE_CODE = re.compile(r"^(\$ |rl |python |pip |import |from \w+ import )")
FILE_BLOCK = re.compile(r"^# ([\w./-]+\.py)\s*$")
TIMEOUT_S = 300
PY_BUDGET = 2048
LEFTOVER_TIMEOUT_S = 2.0  # what the runtime fixture allows the process backend
# Appended to every Python block: what the block started is gone before it ends.
STOPPED_CHECK = f"""
import multiprocessing as _mp
from rl.runtime import shm as _shm
from tests.conftest import assert_no_leftovers as _assert_no_leftovers
_assert_no_leftovers([_p.pid for _p in _mp.active_children()], _shm.driver_prefix(),
                     {LEFTOVER_TIMEOUT_S}, "the end of the block (stop the algorithm: "
                     "`with config.build() as algo:` or `algo.stop()`)")
"""


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    not_run: str | None  # the marker's reason, or None

    @property
    def where(self) -> str:
        return f"{os.path.relpath(self.path, ROOT)}:{self.line}"


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
        # A fence indented inside a list item: its lines carry the same indent.
        code = textwrap.dedent("\n".join(lines[i + 1 : end]))
        blocks.append(Block(path, i + 1, m.group(2), code,
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
        # --as-test exits 1 when the (here: cut) budget did not reach the stop reward.
        allowed = (0, 1) if "--as-test" in tokens else (0,)
        self.run(["bash", "-c", f"exec {command}"], f"{where}: `{command}`", allowed)
        self.done.add(command)

    def write_file(self, code: str) -> None:
        name = FILE_BLOCK.match(code.splitlines()[0]).group(1)
        (self.work / name).write_text(code + "\n")

    def run_python(self, code: str, where: str) -> None:
        code = python_budget(code)
        if code in self.done:
            return
        self.run([sys.executable, "-c", code + STOPPED_CHECK], f"{where}: the Python block")
        self.done.add(code)

    def run(self, argv: list[str], what: str, allowed: tuple[int, ...] = (0,)) -> None:
        """Run ``argv`` as a session of its own; assert its exit status, then that no
        process of the session and no segment of its driver outlive it."""
        # Output to files, not pipes: a pipe stays open while a leftover child holds it.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(argv, cwd=self.work, env=self.env, stdout=out, stderr=err,
                                    start_new_session=True)
            try:
                proc.wait(timeout=TIMEOUT_S)
                out.seek(0)
                err.seek(0)
                assert proc.returncode in allowed, (
                    f"{what} exited {proc.returncode}\n{out.read()[-3000:]}\n"
                    f"{err.read()[-3000:]}")
                assert_no_leftovers(session_pids(proc.pid), shm.driver_prefix(proc.pid),
                                    LEFTOVER_TIMEOUT_S, what)
            finally:  # pass, fail or time out: leave nothing on this machine
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                shm.sweep(shm.driver_prefix(proc.pid))


def session_pids(sid: int) -> list[int]:
    """The processes of session ``sid`` (``/proc/PID/stat``'s sixth field)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        if int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def python_budget(code: str) -> str:
    """``code`` with every ``env_steps_total`` stop value, the whole number token as
    ``parse_number`` reads it (``100_000``, ``1e5``, ``2.5M``, quoted or not), made
    ``PY_BUDGET``."""
    return re.sub(r"""(["']?env_steps_total["']?\s*[:=]\s*)(["']?)"""
                  r"""\d[\d_]*(\.[\d_]*)?([eE][-+]?\d+)?[kKmMgGbB]?\b\2""",
                  rf"\g<1>{PY_BUDGET}", code)


def fence_problems(block: Block) -> list[str]:
    """What is wrong with a block's fence and marker (see the module docstring)."""
    if block.lang in RENAME:
        return [f"{block.where}: a ```{block.lang} block is not run; write it as "
                f"```{RENAME[block.lang]} (or mark it <!-- not-run: REASON -->)"]
    if block.lang not in RUNNABLE + NOT_CODE:
        return [f"{block.where}: fence language {block.lang!r} is none of "
                f"{', '.join(RUNNABLE + NOT_CODE[:-1])} (or none, for layouts)"]
    if block.lang == "" and any(LOOKS_LIKE_CODE.match(line) for line in block.code.splitlines()):
        return [f"{block.where}: an untagged block holds code; tag it bash or python"]
    if block.not_run is not None:
        if not block.not_run:
            return [f"{block.where}: not-run marker without a reason"]
        if block.lang not in RUNNABLE:
            return [f"{block.where}: only code blocks are run"]
    elif block.lang == "bash":
        return [f"{block.where}: `{' '.join(tokens)}` is not an rl command; mark the block "
                "<!-- not-run: REASON --> if no test can run it"
                for tokens in bash_commands(block.code) if tokens[0] != "rl"]
    return []


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
    if command == "tune":
        return ["--trials", "1"]
    return []


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Session:
    return Session(tmp_path_factory.mktemp("docs_examples"))


def test_every_marker_gives_a_reason_and_every_runnable_bash_block_is_rl():
    problems = [p for path in DOCUMENTS for block in read_blocks(path)
                for p in fence_problems(block)]
    assert not problems, "\n".join(problems)


def test_fences_that_would_escape_the_test_are_refused(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("\n".join([
        "```sh", "pip install rl", "```",
        "1. A step:", "", "   ```bash", "   rl train --algo ppo", "   ```",
        "   ```console", "   $ rl train", "   ```",
        "```", "rl train --algo ppo", "```",
        "```", "rl/", "  config.py", "```",
        "```toml", "a = 1", "```",
        "<!-- not-run: -->", "```bash", "ls", "```",
        "```py", "import rl", "```",
    ]) + "\n")
    blocks = read_blocks(doc)
    assert [b.lang for b in blocks] == ["sh", "bash", "console", "", "", "toml", "bash", "py"]
    assert blocks[1].code == "rl train --algo ppo"  # the list's indent is gone
    problems = [fence_problems(b) for b in blocks]
    assert "write it as ```bash" in problems[0][0] and "write it as ```bash" in problems[2][0]
    assert problems[1] == [] and problems[4] == []  # a layout needs no language
    assert "untagged block holds code" in problems[3][0]
    assert "fence language 'toml'" in problems[5][0]
    assert "marker without a reason" in problems[6][0]
    assert "write it as ```python" in problems[7][0]


@pytest.mark.parametrize("text", ["100_000", "1e5", "100k", "2.5M", "'1e5'", '"100k"', "100000"])
def test_the_python_budget_replaces_the_whole_number(text):
    code = f'algo.fit(stop={{"env_steps_total": {text}, "training_iteration": 9}})'
    assert python_budget(code) == (
        f'algo.fit(stop={{"env_steps_total": {PY_BUDGET}, "training_iteration": 9}})')
    assert python_budget(f"Stop(env_steps_total={text})") == f"Stop(env_steps_total={PY_BUDGET})"


@pytest.mark.parametrize("code, left", [
    # a child process outlives the block
    ("import subprocess\nsubprocess.Popen(['sleep', '60'])", "survived"),
    # a segment of the driver outlives it (os._exit skips the appended check and atexit)
    ("import os\nfrom rl.runtime import shm\nshm.write_bytes(shm.driver_prefix(), b'x')\n"
     "os._exit(0)", "segments left in /dev/shm"),
    # an algorithm still running at the end of the block (the runtime's atexit would stop it)
    ("from rl import PPOConfig\nalgo = PPOConfig().environment('CartPole-v1')"
     ".env_runners(num_env_runners=1).build()", "survived the end of the block"),
])
def test_a_block_that_leaves_something_behind_fails(tmp_path, code, left):
    with pytest.raises(AssertionError, match=left):
        Session(tmp_path).run_python(code, "doc.md:1")


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
