"""Research variants of EvoGM that the core does not ship (imported as ``evogm_bench.research``).

A setting enters the core (``evogm_opt``) when its ablation is adopted; until then, or once it is rejected, the
experiment lives here, built on the core's public extension points and run as a bench peer (docs/architecture.md).
"""
