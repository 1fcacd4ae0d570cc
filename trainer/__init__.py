"""Offline trainer: history, vectorised environment, PPO, publishing."""
