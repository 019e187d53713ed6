"""Train one PPO policy shared by two agents of a PettingZoo env (or one policy per
agent with ``--independent``), then play one game.

``MatchingGame-v0`` (``rl.envs.MatchingGame``) rewards both agents 1 at each step where
they pick the same action, so the best game returns 16 (8 steps x 2 agents, summed).
The trained policy acts for every agent through ``compute_actions({agent: obs})``,
which returns ``{agent: action}``; the game below is stepped with PettingZoo's Parallel
API. With ``--independent`` each agent has a policy of its own (``policies=["agent_0",
"agent_1"]``: the ids are the agents', so no mapping function is needed) and the
results add each policy's share, ``policy/<id>/episode_return_mean``. Any Parallel env
works the same way (``--env mpe2.simple_spread_v3:parallel_env``
with ``pip install "rl[multiagent]"``).

    python examples/multi_agent.py [--timesteps 4096] [--env MatchingGame-v0] [--independent]
"""

from __future__ import annotations

import argparse

from rl import PPOConfig
from rl.envs import MatchingGame


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=4096)
    p.add_argument("--env", default="MatchingGame-v0")
    p.add_argument("--independent", action="store_true",
                   help="one policy per agent of MatchingGame instead of one shared")
    args = p.parse_args()
    config = (PPOConfig().environment(args.env)
              .env_runners(num_env_runners=0, num_envs_per_env_runner=4,
                           rollout_fragment_length=32)
              .training(train_batch_size=128, minibatch_size=64, num_epochs=4, lr=3e-3,
                        model_hiddens=[32, 32])
              .set(seed=0))
    if args.independent:
        config.multi_agent(policies=["agent_0", "agent_1"])
    with config.build() as algo:
        while algo.env_steps_total < args.timesteps:
            result = algo.train()
        print(f"trained {algo.env_steps_total} env steps, training return "
              f"{result['episode_return_mean']:.1f} (summed over agents)")
        for pid in algo.policy_map.ids if args.independent else ():
            print(f"  policy {pid}: {result[f'policy/{pid}/episode_return_mean']:.1f}")
        if args.env != "MatchingGame-v0":
            return
        env = MatchingGame()
        obs, _ = env.reset(seed=123)
        total = 0.0
        while env.agents:
            actions = algo.compute_actions(obs)
            obs, rewards, terminations, truncations, _ = env.step(actions)
            total += sum(rewards.values())
        print(f"one greedy game: return {total:.0f} of 16")


if __name__ == "__main__":
    main()
