"""Experiments: outcome feedback, fleet-wide statistics, always-valid comparisons, shadow traffic, rollouts."""
