"""Mapping files, ``{{ }}`` templates, and the compiled JMESPath evaluator.

``compile`` and ``search`` are drop-ins for the ``jmespath`` module's entry points.
"""

from app.mapping.compiled import CompiledExpression, compile, search

__all__ = ["CompiledExpression", "compile", "search"]
