"""AlgorithmConfig: typed, documented, validated settings with a builder API.

Every setting is a dataclass field with a type, a default, a doc line and the values
it takes (``rl.config_fields``: the one source of ``--help-config`` and of the error
messages). Builder methods (``.environment() .env_runners() .training() .learners()
.resources() .evaluation() .debugging() .fault_tolerance() .callbacks() .reporting()``)
all go through one setter that rejects unknown names with the closest valid one and
invalid values at once. ``validate()`` runs before any process starts and states each
violated constraint between fields with the numbers.
``to_dict()``/``from_dict()`` and ``to_yaml()``/``from_yaml()`` round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import re
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import yaml

from rl.config_fields import (
    Check,
    ConfigError,
    check_value,
    coerce,
    parse_number,
    setting,
    valid_values,
)
from rl.runtime import BACKENDS

__all__ = ["AlgorithmConfig", "Check", "ConfigError", "coerce", "error_line", "parse_number",
           "setting"]


def error_line(error: BaseException, limit: int = 160) -> str:
    """An exception as one short line for a user-facing message: its type and the first
    line of its text (user code and libraries raise multi-line essays)."""
    text = str(error).strip()
    text = text.splitlines()[0].strip() if text else ""
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """A duration in seconds as people type it: plain seconds (``90``, ``1.5e3``) or with
    a unit ``s``, ``m`` or ``h`` (``90s``, ``5m``, ``1.5h``). Number suffixes are refused:
    to ``parse_number`` ``5m`` is five million, which as a time limit is a surprise.

    Raises:
        ValueError: not a duration.
    """
    t = text.strip()
    unit = 1
    if t[-1:] in _SECONDS and t[:-1]:
        unit, t = _SECONDS[t[-1]], t[:-1]
    if t[-1:].isalpha():
        raise ValueError(f"{text!r} is not a duration: seconds, or a number with unit "
                         f"s, m or h (90, 90s, 5m, 1.5h)")
    seconds = parse_number(t) * unit
    if seconds < 0:
        raise ValueError(f"{text!r} is a negative duration")
    return seconds


def _is_fragment_length(value: int | str) -> bool:
    return value == "auto" if isinstance(value, str) else value >= 1


def _is_device(value: str) -> bool:
    return value in ("auto", "cpu", "cuda") or (value.startswith("cuda:")
                                                and value[5:].isdigit())


#: ``rollout_fragment_length`` where 'auto' is allowed (subclasses that redeclare it reuse it).
FRAGMENT_LENGTH = Check(_is_fragment_length, "'auto' or an int >= 1")
#: ``policies`` and ``policies_to_train``: ids that name result keys and checkpoint files.
POLICY_IDS = Check(lambda ids: bool(ids) and len(set(ids)) == len(ids) and all(
    re.fullmatch(r"[A-Za-z0-9_.-]+", i) for i in ids),
    "a non-empty list of distinct ids of letters, digits, '_', '.' and '-'")
#: ``model_hiddens`` (subclasses that redeclare it reuse it).
MODEL_HIDDENS = Check(lambda widths: bool(widths) and all(w >= 1 for w in widths),
                      "a non-empty list of positive widths")


@dataclass
class AlgorithmConfig:
    """Settings shared by every algorithm. Subclasses add their training fields.

    When a value is checked: every builder call, ``set()``, ``from_dict()`` and
    ``from_yaml()`` checks each value it is given on its own (its type, bounds, choices
    and any rule of that field alone) and raises ``ConfigError`` at that call, with the
    message ``rl train --set`` prints for the same value. Constraints between fields
    (``minibatch_size <= train_batch_size``, a train batch of whole fragments, an env
    set, Ray installed for ``backend="ray"``) are checked by ``validate()``, which
    ``build()`` calls: the order of the builder calls never matters, so a chain that is
    valid at its end is never rejected midway. A field assigned directly
    (``config.lr = -1``) is checked by ``validate()``.
    """

    algo_name: ClassVar[str] = "base"

    # environment
    env: str | None = setting(None, "Env name: gymnasium id, short name, 'module:Class' or a "
                              "name given to rl.register_env()", section="environment")
    env_config: dict = setting({}, "Keyword arguments for the env creator / gymnasium.make",
                               section="environment")
    normalize_obs: bool = setting(False, "Running mean/std observation normalisation (clip ±10)",
                                  section="environment")
    # env_runners
    num_env_runners: int = setting(2, "Rollout worker actors; 0 samples in the driver process",
                                   section="env_runners", min=0)
    num_envs_per_env_runner: int = setting(8, "Sub-envs each worker steps as one vector",
                                           section="env_runners", min=1)
    rollout_fragment_length: int | str = setting(
        "auto", "Steps per sub-env per sample request; 'auto' derives it from train_batch_size",
        section="env_runners", check=FRAGMENT_LENGTH)
    # training (common)
    gamma: float = setting(0.99, "Discount factor", min=0.0, max=1.0)
    lr: float = setting(3e-4, "Learning rate", min=0.0)
    lr_schedule: str = setting("constant", "Learning-rate schedule over schedule_timesteps",
                               choices=("constant", "linear"))
    schedule_timesteps: int = setting(0, "Horizon of linear schedules in env steps; 0 = the "
                                      "run's stop timesteps", min=0)
    train_batch_size: int = setting(1024, "Env steps per training iteration", min=1)
    grad_clip: float | None = setting(0.5, "Global gradient-norm clip; null disables", min=0.0)
    model_hiddens: list[int] = setting([64, 64], "MLP layer widths", check=MODEL_HIDDENS)
    model_activation: str = setting("tanh", "MLP activation",
                                    choices=("tanh", "relu", "elu", "silu", "gelu"))
    vf_share_layers: bool = setting(False, "One trunk for policy and value (always for images)")
    model_class: str | None = setting(
        None, "Your own torch model: 'package.module:Class' or a name given to "
        "rl.register_model(); null = the built-in MLP/CNN (model_hiddens, model_activation, "
        "vf_share_layers configure only the built-in)",
        check=Check(lambda v: bool(v.strip()), "'package.module:Class', a registered name or "
                    "null"))
    use_lstm: bool = setting(False, "A recurrent policy: the built-in encoder, then an LSTM "
                             "of lstm_cell_size, then the heads (PPO)")
    lstm_cell_size: int = setting(256, "Hidden size of the built-in LSTM (use_lstm)", min=1)
    max_seq_len: int = setting(20, "Recurrent policies: the longest sequence the learner "
                               "trains on (sequences never cross an episode boundary)",
                               min=1)
    lstm_use_prev_action: bool = setting(False, "The built-in LSTM (use_lstm) also reads the "
                                         "previous action (one-hot for Discrete, the vector "
                                         "for Box; zeros at an episode's first step)")
    lstm_use_prev_reward: bool = setting(False, "The built-in LSTM (use_lstm) also reads the "
                                         "previous reward (0 at an episode's first step)")
    model_kwargs: dict = setting({}, "Keyword arguments of the model's constructor (JSON on "
                                 "the command line); with the built-in model they add to and "
                                 "override its settings (e.g. cnn_hidden)",
                                 check=Check(lambda v: all(isinstance(k, str) for k in v),
                                             "a dict with string keys (keyword arguments)"))
    # learners
    num_learners: int = setting(0, "Learner processes training as one (DDP, each on an equal "
                                "share of the batch); 0 = one learner in the driver",
                                section="learners", min=0)
    num_gpus_per_learner: float = setting(0.0, "GPUs per learner process; learner r takes GPU r",
                                          section="learners", min=0.0)
    num_cpus_per_learner: float = setting(1.0, "CPUs (torch threads) per learner process",
                                          section="learners", min=0.0)
    device: str = setting("auto", "Learner device: auto (CUDA when the learner has a GPU), cpu, "
                          "cuda or cuda:N", section="learners",
                          check=Check(_is_device, "auto, cpu, cuda or cuda:N"))
    # resources
    backend: str = setting("process", "Actor runtime backend", section="resources",
                           choices=BACKENDS)
    ray_address: str | None = setting(None, "Ray cluster address (backend=ray): null starts a "
                                      "local Ray, 'auto' or host:port joins one",
                                      section="resources")
    # evaluation
    evaluation_interval: int = setting(0, "Evaluate every N iterations; 0 = only on request",
                                       section="evaluation", min=0)
    evaluation_duration: int = setting(10, "Greedy episodes per evaluation",
                                       section="evaluation", min=1)
    evaluation_num_envs: int = setting(5, "Parallel envs used by evaluation",
                                       section="evaluation", min=1)
    # debugging
    seed: int | None = setting(0, "Global seed; episode k of sub-env i is seeded from "
                               "(seed, i, k), so runs resume exactly", section="debugging")
    log_level: str = setting("info", "Level of the 'rl' logger, set when the algorithm is "
                             "built (debug also shows learner-group and Ray details)",
                             section="debugging", choices=("debug", "info", "warning", "error"))
    # callbacks
    callbacks_class: str | None = setting(
        None, "Your rl.Callbacks subclass ('package.module:Class'): episode hooks in the "
        "workers (custom metrics), training hooks in the driver", section="callbacks",
        check=Check(lambda v: ":" in v, "'package.module:Class' or null"))
    # reporting
    metrics_smoothing_episodes: int = setting(100, "Episodes averaged in episode_return_mean",
                                              section="reporting", min=1)
    # fault tolerance
    restart_failed_env_runners: bool = setting(True, "Replace workers that die or raise",
                                               section="fault_tolerance")
    max_restarts_per_env_runner: int = setting(3, "Restarts allowed per worker before train() "
                                               "raises", section="fault_tolerance", min=0)
    sample_timeout_s: float = setting(60.0, "A worker silent this long is killed and replaced",
                                      section="fault_tolerance", min=0.0)
    restart_failed_sub_environments: bool = setting(
        False, "Recreate a sub-env whose step/reset raised instead of restarting the worker",
        section="fault_tolerance")
    exact_resume: bool = setting(
        True, "Record the actions of every running episode (seeded runs) so that a resumed "
        "run replays them and continues exactly; off, a resumed run starts fresh episodes",
        section="fault_tolerance")
    # multi_agent (PettingZoo envs; rl.algorithms.policy_map)
    policies: list[str] | None = setting(
        None, "Multi-agent: the policy ids (null: one shared policy, 'default_policy')",
        section="multi_agent", check=POLICY_IDS)
    policy_mapping_fn: str | None = setting(
        None, "Multi-agent: 'package.module:function' mapping an agent id to a policy id "
        "(null: each agent to the policy of its own name, or the only policy)",
        section="multi_agent", check=Check(lambda v: ":" in v, "'package.module:function' "
                                           "or null"))
    policies_to_train: list[str] | None = setting(
        None, "Multi-agent: the policies that learn (null: all); the others act, frozen",
        section="multi_agent", check=POLICY_IDS)
    policy_overrides: dict = setting(
        {}, "Multi-agent: policy id -> the settings that differ for it (model_class, "
        "model_kwargs, model_hiddens, model_activation, vf_share_layers, use_lstm, "
        "lstm_cell_size, lstm_use_prev_action, lstm_use_prev_reward, lr, entropy_coeff)",
        section="multi_agent",
        check=Check(lambda v: all(isinstance(k, str) and isinstance(o, dict)
                                  for k, o in v.items()),
                    "a dict of policy id -> {setting: value}"))

    # ----------------------------------------------------------------- builder API
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _field(cls, name: str) -> dataclasses.Field:
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f
        raise cls.unknown_key_error(name)

    @classmethod
    def unknown_key_error(cls, name: str) -> ConfigError:
        """The error for a key that is not a field, with the best hint there is."""
        return ConfigError(f"unknown {cls.algo_name} config key {name!r}"
                           f"{suggest_field(name, cls.field_names())} "
                           f"(see `rl train --algo {cls.algo_name} --help-config`)")

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Every field's type annotation, by name."""
        return typing.get_type_hints(cls)

    @classmethod
    def valid_values(cls, name: str) -> str:
        """What the field ``name`` accepts, in words (``--help-config``), from the metadata
        the setter checks."""
        return valid_values(cls._field(name), cls.field_types()[name])

    def set(self, **settings: Any) -> Self:
        """Set any fields by name, each value checked on its own (type, bounds, choices,
        the field's rule); the one setter behind every builder.

        Raises:
            ConfigError: an unknown name or an invalid value; nothing is set then.
        """
        hints = self.field_types()
        checked = {}
        for name, value in settings.items():
            meta = self._field(name).metadata  # an unknown name raises first
            checked[name] = check_value(name, hints[name], meta, value)
        for name, value in checked.items():
            setattr(self, name, value)
        return self

    def _section(self, section: str, settings: dict[str, Any]) -> Self:
        for name in settings:
            f = self._field(name)
            if f.metadata.get("section") != section:
                raise ConfigError(f"{name!r} is not a .{section}() setting; set it with "
                                  f".{f.metadata.get('section')}({name}=...)")
        return self.set(**settings)

    def environment(self, env: str | None = None, **kw: Any) -> Self:
        if env is not None:
            kw["env"] = env
        return self._section("environment", kw)

    def env_runners(self, **kw: Any) -> Self:
        return self._section("env_runners", kw)

    def training(self, **kw: Any) -> Self:
        return self._section("training", kw)

    def learners(self, **kw: Any) -> Self:
        return self._section("learners", kw)

    def resources(self, **kw: Any) -> Self:
        return self._section("resources", kw)

    def evaluation(self, **kw: Any) -> Self:
        return self._section("evaluation", kw)

    def debugging(self, **kw: Any) -> Self:
        return self._section("debugging", kw)

    def callbacks(self, callbacks_class: str | type | None = None, **kw: Any) -> Self:
        """``callbacks_class``: ``"module:Class"`` or the class itself (a class is stored
        by its import path, ``module:QualName``; one defined in a script is ``__main__:``
        and reaches the workers with the config)."""
        if isinstance(callbacks_class, type):
            if "<locals>" in callbacks_class.__qualname__:
                raise ConfigError(f"callbacks_class {callbacks_class.__qualname__} is defined "
                                  "inside a function; define it at module level so that it "
                                  "has an import path")
            callbacks_class = f"{callbacks_class.__module__}:{callbacks_class.__qualname__}"
        if callbacks_class is not None:
            kw["callbacks_class"] = callbacks_class
        return self._section("callbacks", kw)

    def multi_agent(self, **kw: Any) -> Self:
        """Policies of a multi-agent env: ``policies``, ``policy_mapping_fn``,
        ``policies_to_train``, ``policy_overrides`` (``rl.algorithms.policy_map``)."""
        return self._section("multi_agent", kw)

    def reporting(self, **kw: Any) -> Self:
        return self._section("reporting", kw)

    def fault_tolerance(self, **kw: Any) -> Self:
        return self._section("fault_tolerance", kw)

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check every field again (a direct assignment skipped the setter), then the
        constraints between fields and on the machine; raises ConfigError."""
        self.set(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if self.env is None:
            raise ConfigError("no env set: use .environment('CartPole-v1') or --env NAME")
        for name in ("lstm_use_prev_action", "lstm_use_prev_reward"):
            if getattr(self, name) and not self.use_lstm:
                raise ConfigError(f"{name}=true needs use_lstm=true: it feeds the built-in "
                                  "LSTM (a recurrent model_class cannot be given the previous "
                                  "action or reward by rl)")
        if self.backend == "ray" and not ray_installed():
            raise ConfigError("backend=ray needs Ray, which is not installed: "
                              "pip install 'rl[ray]'")

    # ----------------------------------------------------------------- derived values
    @property
    def total_envs(self) -> int:
        """Sub-envs across all workers (the driver's when num_env_runners == 0)."""
        return max(1, self.num_env_runners) * self.num_envs_per_env_runner

    def fragment_length(self) -> int:
        """Steps per sub-env per sample call."""
        if self.rollout_fragment_length == "auto":
            return max(1, -(-self.train_batch_size // self.total_envs))
        return int(self.rollout_fragment_length)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (YAML/JSON friendly)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a dict; unknown keys raise with the closest valid name."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a mapping of key: value, got {type(data).__name__}")
        return cls().set(**data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Self:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML: {yaml_error(e)}") from None
        return cls.from_dict(data or {})

    def copy(self) -> Self:
        return type(self).from_dict(self.to_dict())

    def build(self, logdir: str | None = None, *, checkpoint: str | None = None):
        """Validate and construct the algorithm registered under ``algo_name``
        (``checkpoint``: the one it will restore, checked before any process starts)."""
        from rl.algorithms.registry import algorithm_class

        self.validate()
        return algorithm_class(self.algo_name)(self.copy(), logdir=logdir,
                                               checkpoint=checkpoint)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()


# Names users bring from Stable-Baselines3, RLlib and CleanRL -> rl's field(s) in order of
# preference (the first the config has is named; "a+b" names both), and a note where the
# meaning shifts.
ALIASES: dict[str, tuple[tuple[str, ...], str]] = {
    "learning_rate": (("lr",), ""),
    "n_steps": (("rollout_fragment_length",), "steps per sub-env per sample request"),
    "batch_size": (("minibatch_size", "train_batch_size"), ""),
    "n_epochs": (("num_epochs",), ""),
    "num_sgd_iter": (("num_epochs",), ""),
    "update_epochs": (("num_epochs",), ""),
    "sgd_minibatch_size": (("minibatch_size",), ""),
    "num_minibatches": (("minibatch_size",), "rl sets the minibatch size, not their number"),
    "ent_coef": (("entropy_coeff",), ""),
    "clip_range": (("clip_param",), ""),
    "clip_coef": (("clip_param",), ""),
    "clip_range_vf": (("vf_clip_param",), ""),
    "clip_vloss": (("vf_clip_param",), "a clip range, null disables"),
    "vf_coef": (("vf_loss_coeff",), ""),
    "max_grad_norm": (("grad_clip",), ""),
    "lambda": (("gae_lambda", "vtrace_lambda"), ""),
    "lambda_": (("gae_lambda", "vtrace_lambda"), ""),
    "normalize_advantage": (("normalize_advantages",), ""),
    "norm_adv": (("normalize_advantages",), ""),
    "anneal_lr": (("lr_schedule",), "lr_schedule=linear anneals to 0"),
    "policy_kwargs": (("model_hiddens+model_activation",), "e.g. model_hiddens=[64,64]"),
    "model": (("model_hiddens+model_activation",), ""),
    "fcnet_hiddens": (("model_hiddens",), ""),
    "fcnet_activation": (("model_activation",), ""),
    "activation_fn": (("model_activation",), ""),
    "net_arch": (("model_hiddens",), ""),
    "num_workers": (("num_env_runners",), ""),
    "num_rollout_workers": (("num_env_runners",), ""),
    "n_envs": (("num_envs_per_env_runner",), ""),
    "num_envs": (("num_envs_per_env_runner",), "sub-envs per worker"),
    "num_envs_per_worker": (("num_envs_per_env_runner",), ""),
    "num_gpus": (("num_gpus_per_learner",), ""),
    "train_batch_size_per_learner": (("train_batch_size",), "rl's is the total over learners"),
    "buffer_size": (("replay_buffer_capacity",), ""),
    "replay_buffer_config": (("replay_buffer_capacity", "prioritized_replay"), ""),
    "learning_starts": (("num_steps_sampled_before_learning_starts",), ""),
    "target_update_interval": (("target_network_update_freq",), ""),
    "target_network_frequency": (("target_network_update_freq",), ""),
    "exploration_initial_eps": (("epsilon_initial",), ""),
    "exploration_final_eps": (("epsilon_final",), ""),
    "start_e": (("epsilon_initial",), ""),
    "end_e": (("epsilon_final",), ""),
    "exploration_fraction": (("epsilon_timesteps",), "in env steps, not a fraction"),
    "train_freq": (("training_intensity",), "gradient updates per env step"),
    "gradient_steps": (("training_intensity",), "gradient updates per env step"),
    "total_timesteps": ((), "a stop criterion: --stop-timesteps N, or stop: "
                        "{env_steps_total: N} in a tuned example"),
}


def suggest_field(name: str, fields: list[str]) -> str:
    """The hint for an unknown config key: the rl name of a name from another library
    (``ALIASES``) or a near-certain typo fix (both when they differ), else a close name;
    empty rather than a wrong guess."""
    typo = difflib.get_close_matches(name, fields, n=1, cutoff=0.88)
    targets, note = ALIASES.get(name.lower(), ((), ""))
    for target in targets:
        parts = target.split("+")
        if not all(p in fields for p in parts):
            continue
        if typo and typo[0] in parts:
            return f"; did you mean {typo[0]}?"
        if typo:
            # Both readings are plausible and mean different things (DQN's n_steps: a
            # typo of its n_step, or Stable-Baselines3's rollout length): name both.
            return (f"; did you mean {typo[0]}? (or, if {name} is another library's name, "
                    f"rl calls it {' and '.join(parts)}" + (f": {note})" if note else ")"))
        return f"; rl calls it {' and '.join(parts)}" + (f" ({note})" if note else "")
    if typo:
        return f"; did you mean {typo[0]}?"
    if note and not targets:
        return f" ({note})"
    close = difflib.get_close_matches(name, fields, n=3, cutoff=0.75)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def yaml_error(error: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong, at line L, column C (1-based)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    what = f"{problem} ({context})" if context else problem
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark else what


def ray_installed() -> bool:
    """Whether the ray backend can be used (checked without importing Ray, which is slow)."""
    return importlib.util.find_spec("ray") is not None


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse_value(text: str) -> Any:
    """Parse a ``--set KEY=VALUE`` value with YAML rules (``64,64`` is a list)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and "," in value:
        return [parse_value(part.strip()) for part in value.split(",")]
    if isinstance(value, str):
        # YAML 1.1 reads "1e-3" as a string; numbers are what users mean.
        for number in (int, float):
            try:
                return number(value)
            except ValueError:
                pass
    return value
