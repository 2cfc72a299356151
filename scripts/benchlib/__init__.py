"""Helpers of scripts/bench.py: shapes and synthetic data (models), the device and its
numbers (device), the DPO and PPO measurements (dpo, ppo), and the printed tables (report)."""
