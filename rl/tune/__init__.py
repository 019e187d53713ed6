"""``rl tune``: hyper-parameter sweeps of a tuned example's ``tune:`` space.

``space`` parses and samples the search space, ``study`` runs the embedded Optuna study
(SQLite, trial processes, pruning), ``trial`` is one trial's process, ``report`` writes
``trials.csv``, ``best.yaml`` and the plots. Optuna is imported only when a sweep runs
(the ``rl[tune]`` extra), so loading a tuned example never needs it.

``ray_study`` is the Ray Tune path (``--backend ray``, ``--address``, ``--pruner pbt``):
the same ``TuneSpec`` (its distributions map one to one onto Ray Tune's),
``trial.run_trial`` as the trainable (its ``emit`` becomes ``tune.report``), Optuna as
Ray's searcher and ASHA, the median rule or PBT as its scheduler; its results become the
same records ``report`` writes from.
"""

from rl.tune.space import TuneSpec, parse_tune

__all__ = ["TuneSpec", "parse_tune"]
