"""Flax models, data and distillation (installed as secmoe_jax.training)."""
