"""srl-agent: train code agents on expert trajectories with Supervised Reinforcement Learning."""

__version__ = "0.1.0"
