"""Thin adapters from align's configs to TRL trainers, one module per algorithm.

Each module holds the algorithm's flag dataclass (importable without torch) and a ``run``
function that imports TRL, maps the config and trains. Every TRL import or version difference
stays inside the module that needs it.
"""
