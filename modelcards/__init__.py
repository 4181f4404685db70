"""The built-in model cards of goa: one ``<id>.yaml`` file per model.

This package holds data only; read it with :func:`goa.cards.builtin_cards`.
"""
