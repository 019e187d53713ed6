"""Checkpoints: a directory with ``state.json``, torch state dicts and numpy arrays.

Layout of ``checkpoint_<iter>/``:

* ``state.json``: algorithm name, resolved config, counters, schedules, RNG states;
* ``<name>.pt``: tensors-only objects (state dicts), loaded with ``weights_only=True``;
* ``<name>.npz``: numpy arrays (e.g. a replay buffer), loaded with ``allow_pickle=False``.

``state.json`` records the ``rl_version`` that wrote it and the checkpoint ``format``
(``FORMAT_VERSION``; a checkpoint without one is format 0, from before it was recorded,
and loads as before). A newer format than this rl reads is refused, naming both
versions. Every read names the file that is wrong and why (missing, corrupt or
truncated, not fitting the model) in one line: ``CheckpointError``.

Nothing on disk is ever unpickled. A checkpoint is written into a temporary sibling
directory, fsynced, and renamed into place, so a crash in the middle of a save leaves
every earlier checkpoint intact and never a half-written one under the final name.
Replacing a checkpoint of the same name (Ctrl-C right after a periodic save writes to
the same ``checkpoint_<iter>``) swaps the two directories in one ``renameat2`` call
where the kernel and file system allow it, so there is no moment without a loadable
checkpoint under that name; elsewhere it takes two renames and undoes the first if
the second fails.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import uuid
from typing import Any

import numpy as np

from rl.config import error_line
from rl.lazy_torch import torch

__all__ = [
    "FORMAT_VERSION",
    "CheckedCheckpoint",
    "CheckpointError",
    "check_shapes",
    "load_arrays",
    "load_state",
    "load_tensors",
    "read_checked",
    "require",
    "rng_from_plain",
    "rng_to_plain",
    "save_checkpoint",
    "stamp",
]

STATE_FILE = "state.json"
FORMAT_VERSION = 1
"""The layout ``save_checkpoint`` writes; bump it when a change would make an older rl
misread a new checkpoint, and keep loading the older formats where possible."""


class CheckpointError(ValueError):
    """A path that is not a readable checkpoint: the message names the file and why."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: str) -> None:
    """Flush every file of a freshly written checkpoint, then the directory itself."""
    for name in os.listdir(path):
        fd = os.open(os.path.join(path, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(path)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: str, b: str) -> bool:
    """Atomically swap the directories ``a`` and ``b``; False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _replace_dir(new: str, path: str) -> None:
    """Put the directory ``new`` at ``path``, which holds an older checkpoint."""
    if _exchange(new, path):
        shutil.rmtree(new, ignore_errors=True)  # it now holds the old checkpoint
        return
    old = f"{new}.old"
    os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(path: str, state: dict[str, Any], tensors: dict[str, Any] | None = None,
                    arrays: dict[str, dict[str, np.ndarray]] | None = None) -> str:
    """Atomically write a checkpoint directory at ``path``; returns the absolute path.

    ``state`` goes to ``state.json`` as given; ``stamp()`` adds the version fields.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        for name, obj in (tensors or {}).items():
            torch.save(obj, os.path.join(tmp, f"{name}.pt"))
        for name, cols in (arrays or {}).items():
            with open(os.path.join(tmp, f"{name}.npz"), "wb") as f:
                np.savez(f, **cols)
        with open(os.path.join(tmp, STATE_FILE), "w") as f:
            json.dump(state, f, indent=1)
        _fsync_tree(tmp)
        if os.path.exists(path):
            _replace_dir(tmp, path)
        else:
            os.rename(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def stamp(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the ``rl_version`` and checkpoint ``format`` that wrote it."""
    from rl import __version__

    return {**state, "rl_version": __version__, "format": FORMAT_VERSION}


def load_state(path: str) -> dict[str, Any]:
    """``state.json`` of the checkpoint at ``path``, checked to be one this rl reads."""
    file = os.path.join(path, STATE_FILE)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path!r} is not a checkpoint directory (it does not exist)")
    if not os.path.isfile(file):
        raise CheckpointError(f"{path!r} is not a checkpoint directory (no {STATE_FILE})")
    with open(file) as f:
        try:
            state = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{file} is corrupt: {e}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} is corrupt: expected a JSON object, got "
                              f"{type(state).__name__}")
    fmt = state.get("format", 0)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 0:
        raise CheckpointError(f"{file} is corrupt: format must be an integer >= 0, got {fmt!r}")
    if fmt > FORMAT_VERSION:
        from rl import __version__

        raise CheckpointError(
            f"{file} has checkpoint format {fmt} (written by rl "
            f"{state.get('rl_version', '?')}); this rl ({__version__}) reads formats up to "
            f"{FORMAT_VERSION}: upgrade rl to load it")
    return state


def require(state: dict[str, Any], path: str, **types: type | tuple[type, ...]) -> None:
    """Check that ``state`` (read from ``path``'s ``state.json``) has each key with a
    value of the given type; a ``CheckpointError`` names the first that does not."""
    file = os.path.join(path, STATE_FILE)
    for key, tp in types.items():
        if key not in state:
            raise CheckpointError(f"{file} is incomplete: it has no {key!r}")
        if not isinstance(state[key], tp) or isinstance(state[key], bool) and tp is not bool:
            raise CheckpointError(f"{file} is corrupt: {key!r} is {state[key]!r}")


def load_tensors(path: str, name: str, map_location: Any = "cpu") -> Any:
    """A tensors-only object saved under ``name`` (``weights_only=True``: no pickle)."""
    file = os.path.join(path, f"{name}.pt")
    if not os.path.isfile(file):
        raise CheckpointError(f"{file} is missing (the checkpoint is incomplete)")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{file} is corrupt or truncated: not a tensors-only torch "
                              f"file ({error_line(e)})") from e


def load_arrays(path: str, name: str) -> dict[str, np.ndarray] | None:
    """The numpy arrays saved under ``name``, or None when the checkpoint has none."""
    file = os.path.join(path, f"{name}.npz")
    if not os.path.isfile(file):
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as e:
        raise CheckpointError(f"{file} is corrupt or truncated: not a numpy .npz archive "
                              f"of plain arrays ({error_line(e)})") from e


def check_shapes(file: str, saved: dict[str, Any], expected: dict[str, Any],
                 what: str = "the model") -> None:
    """Check that the state dict ``saved`` (read from ``file``) has exactly the keys and
    tensor shapes of ``expected``; a ``CheckpointError`` names the first difference."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{file} is corrupt: expected a state dict, got "
                              f"{type(saved).__name__}")
    missing = [k for k in expected if k not in saved]
    extra = [k for k in saved if k not in expected]
    if missing or extra:
        parts = ([f"lacks {', '.join(missing[:3])}"] if missing else []) + \
                ([f"has unexpected {', '.join(extra[:3])}"] if extra else [])
        raise CheckpointError(f"{file} does not fit {what}: it {' and '.join(parts)} (were the "
                              "model settings (model_hiddens, model_class, model_kwargs) changed, or was it "
                              "written for another model?)")
    for key, ref in expected.items():
        got = tuple(getattr(saved[key], "shape", ()))
        if got != tuple(ref.shape):
            raise CheckpointError(
                f"{file} does not fit {what}: {key} has shape {list(got)} in the checkpoint "
                f"and {list(ref.shape)} in the model (were model_hiddens or the env's spaces "
                "changed?)")


CheckedCheckpoint = tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray] | None]
"""``read_checked``'s ``(state, learner tensors, observation-filter arrays or None)``."""


def read_checked(path: str, *, algo_name: str, module: torch.nn.Module, model: str,
                 obs_shape: tuple[int, ...] | None) -> CheckedCheckpoint:
    """Read a checkpoint's state, learner and observation-filter files and check them
    before anything is built from them.

    Args:
        path: the checkpoint directory.
        algo_name: the algorithm that must have written it.
        module: a fresh model of the config resuming it: the saved one must fit it.
        model: how to name that model in an error (class and sizes).
        obs_shape: the env's observation shape when the resuming run normalises
            observations (the saved filter must fit it), else None.

    Raises:
        CheckpointError: naming the file and why (so that a learner process does not
            fail with torch's many-line message, or a filter with numpy's).
    """
    from rl.envs.normalization import RunningMeanStd

    state = load_state(path)
    require(state, path, algo=str, iteration=int, env_steps_total=int,
            time_total_s=(int, float), episodes=dict, rng=dict, torch_rng=list)
    if state["algo"].lower() != algo_name.lower():
        raise CheckpointError(f"{os.path.join(path, STATE_FILE)}: the checkpoint was written "
                              f"by {state['algo']}, not {algo_name}")
    learner = load_tensors(path, "learner")
    file = os.path.join(path, "learner.pt")
    if not isinstance(learner, dict) or not {"module", "optimizer"} <= set(learner):
        raise CheckpointError(f"{file} is corrupt: expected the learner's module and "
                              "optimizer state")
    check_shapes(file, learner["module"], module.state_dict(),
                 what=f"the model of this config ({model})")
    filt = load_arrays(path, "obs_filter")
    filter_file = os.path.join(path, "obs_filter.npz")
    saved_config = state.get("config")
    if filt is None and isinstance(saved_config, dict) and saved_config.get("normalize_obs"):
        # Evaluating with fresh statistics would feed the policy unnormalized inputs.
        raise CheckpointError(f"{filter_file} is missing (the checkpoint is incomplete: its "
                              "run normalized observations)")
    if filt is not None and obs_shape is not None:
        try:
            RunningMeanStd(obs_shape).load_state(filt)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{filter_file} does not fit this env's observations (shape "
                                  f"{list(obs_shape)}): {error_line(e)}") from e
    return state, learner, filt


def rng_to_plain(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy PCG64 generator's state as JSON-safe values."""
    st = rng.bit_generator.state
    return {"state": str(st["state"]["state"]), "inc": str(st["state"]["inc"]),
            "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}


def rng_from_plain(rng: np.random.Generator, d: dict[str, Any]) -> None:
    """Restore ``rng`` from ``rng_to_plain`` output."""
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(d["state"]), "inc": int(d["inc"])},
        "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"]),
    }
