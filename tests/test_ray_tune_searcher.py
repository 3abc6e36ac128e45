"""GenerativeSearch in a real local Ray Tune run (CPU), plus its space mapping and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray Tune searcher needs the `ray` extra")
from ray import tune  # noqa: E402
from ray.tune.search import ConcurrencyLimiter, Searcher  # noqa: E402

from evogm_opt.integrations.ray_tune import GenerativeSearch  # noqa: E402

SPACE = {
    "x": tune.uniform(-3.0, 3.0),
    "lr": tune.loguniform(1e-4, 1e-1),
    "layers": tune.randint(1, 9),
    "act": tune.choice(["relu", "gelu"]),
    "fixed": 7,
}


def loss(config: dict) -> float:
    return (config["x"] - 1.0) ** 2 + (np.log10(config["lr"]) + 2.0) ** 2 + 0.1 * (config["layers"] - 5) ** 2


def test_suggestions_respect_the_space_and_results_reach_the_optimizer():
    searcher = GenerativeSearch(SPACE, metric="loss", mode="min", seed=0)
    assert isinstance(searcher, Searcher)
    with pytest.warns(UserWarning, match="'act'"):
        configs = [searcher.suggest(f"t{i}") for i in range(12)]
    for i, cfg in enumerate(configs):
        assert -3 <= cfg["x"] <= 3 and 1e-4 <= cfg["lr"] <= 1e-1
        assert isinstance(cfg["layers"], int) and 1 <= cfg["layers"] <= 8
        assert cfg["act"] in ("relu", "gelu") and cfg["fixed"] == 7
        searcher.on_trial_complete(f"t{i}", {"loss": loss(cfg)})
    searcher.on_trial_complete("t3", {"loss": 0.0})  # a repeat for a finished trial changes nothing
    assert searcher.optimizer.n_evals == 12


def test_errored_or_metric_less_trials_are_failures_not_credited_elsewhere():
    searcher = GenerativeSearch(SPACE, metric="loss", mode="min", seed=0)
    a, b = searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("a", None, error=True)
    searcher.on_trial_complete("b", {"other": 1.0})
    assert searcher.optimizer.n_failed == 2 and searcher.optimizer.best is None
    c = searcher.suggest("c")
    searcher.on_trial_complete("c", {"loss": loss(c)})
    best = searcher.optimizer.best
    assert best is not None and best.y == pytest.approx(loss(c))
    assert a != c and b != c


def test_save_restore_continues_identically(tmp_path):
    def drive(s: GenerativeSearch, ids: range) -> list[dict]:
        out = []
        for i in ids:
            cfg = s.suggest(f"t{i}")
            out.append(cfg)
            if i % 3 != 2:  # leave some trials running across the checkpoint
                s.on_trial_complete(f"t{i}", {"loss": loss(cfg)})
        return out

    import warnings

    warnings.simplefilter("ignore")
    first = GenerativeSearch(SPACE, metric="loss", mode="min", seed=1)
    drive(first, range(10))
    first.save(str(tmp_path / "s.npz"))
    after_first = drive(first, range(10, 20))
    second = GenerativeSearch(SPACE, metric="loss", mode="min", seed=1)
    second.restore(str(tmp_path / "s.npz"))
    after_second = drive(second, range(10, 20))
    assert [{k: v for k, v in c.items() if k != "act"} for c in after_first] == [
        {k: v for k, v in c.items() if k != "act"} for c in after_second
    ]
    wrong = GenerativeSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min")
    with pytest.raises(ValueError, match="numeric parameters"):
        wrong.restore(str(tmp_path / "s.npz"))


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="mode"):
        GenerativeSearch(SPACE, metric="loss", mode="up")
    with pytest.raises(ValueError, match="numeric"):
        GenerativeSearch({"act": tune.choice(["a", "b"])}, metric="loss", mode="min")
    with pytest.raises(RuntimeError, match="metric"):
        GenerativeSearch(SPACE).suggest("t")


def test_a_real_local_tune_run_under_a_concurrency_limiter():
    def trainable(config):
        tune.report({"loss": loss(config)})

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        searcher = ConcurrencyLimiter(GenerativeSearch(metric="loss", mode="min", seed=0), max_concurrent=2)
        tuner = tune.Tuner(
            trainable,
            param_space={k: v for k, v in SPACE.items() if k != "act"},
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=24),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert len(results) == 24 and not results.errors
    best = results.get_best_result(metric="loss", mode="min")
    losses = [r.metrics["loss"] for r in results]
    assert best.metrics["loss"] == min(losses)
    assert searcher.searcher.optimizer.n_evals == 24
