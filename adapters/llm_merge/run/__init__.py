"""``evogm-opt merge CONFIG.yaml``: the schema (``config``, torch-free), then ``pipeline.run_merge`` — claim the
folder (``journal``), assemble, search, report — and ``rebuild``. Nothing is imported here, so that the schema
loads without torch."""
