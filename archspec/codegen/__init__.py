"""The framework-neutral half of source generation.

`layout` lays Python source out the way `ruff format` does; `plan` recovers, once per
spec, the module structure a source backend prints (block classes, their parameters,
members with symbolic arguments, loops, the forward wiring, the factory's parameters).
Nothing here imports a deep-learning framework.
"""
