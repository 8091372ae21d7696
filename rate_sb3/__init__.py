"""RATE (Recurrent Action Transformer with Memory) as a Stable-Baselines3 agent."""
