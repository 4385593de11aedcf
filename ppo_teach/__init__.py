"""ppo_teach: policy-gradient RL from REINFORCE to RLHF, one tested implementation per formula.

In a notebook:  ``from ppo_teach import show``, then ``show(fn)`` displays a function's source.
"""
from ppo_teach.show import show

__all__ = ["show"]
