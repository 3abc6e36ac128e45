"""LLM merge adapter (installed by the ``llm`` extra): fitness as merge-and-evaluate. Not built yet."""
