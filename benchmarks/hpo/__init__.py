"""A real, offline tuning benchmark through Optuna (``evogm-opt bench hpo``, docs/hpo.md): GenerativeSampler
against Optuna's own samplers on an HPO space (an SVM) and a NAS-style space (an MLP), scored by cross-validated
error and reported on a held-out test set; a third space (gradient boosting on a regression) is held out for
judging a finished design.

Three modules, in the order a run uses them: :mod:`~evogm_bench.hpo.spaces` (what is tuned: the search spaces and
the models they build), :mod:`~evogm_bench.hpo.run` (the data, the samplers, one study per sampler, the shared
cache, the job files) and :mod:`~evogm_bench.hpo.report` (the statistics, the markdown and the plots). Workers,
thread limits, atomic writes and the statistics are the bench's and the core's own, not re-implemented here.
"""
