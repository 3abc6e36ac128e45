"""GenerativeSearch in a real local Ray Tune run (CPU), plus its space mapping and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray Tune searcher needs the `ray` extra")
from ray import tune  # noqa: E402
from ray.tune.search import ConcurrencyLimiter, Searcher  # noqa: E402

from evogm_opt.integrations.ray_tune import GenerativeSearch  # noqa: E402
from evogm_opt.integrations.space import Categorical, SearchSpace  # noqa: E402

SPACE = {
    "x": tune.uniform(-3.0, 3.0),
    "lr": tune.loguniform(1e-4, 1e-1),
    "layers": tune.randint(1, 9),
    "act": tune.choice(["relu", "gelu"]),
    "fixed": 7,
}


def loss(config: dict) -> float:
    act = 0.0 if config["act"] == "gelu" else 0.5
    return (config["x"] - 1.0) ** 2 + (np.log10(config["lr"]) + 2.0) ** 2 + 0.1 * (config["layers"] - 5) ** 2 + act


def test_suggestions_respect_the_space_and_results_reach_the_optimizer():
    searcher = GenerativeSearch({**SPACE, "noise": tune.randn()}, metric="loss", mode="min", seed=0)
    assert isinstance(searcher, Searcher)
    assert isinstance(searcher.search_space, SearchSpace)
    assert searcher.search_space.params["act"] == Categorical(["relu", "gelu"])  # searched jointly
    with pytest.warns(UserWarning, match="'noise'") as record:  # only the unbounded domain is sampled at random
        configs = [searcher.suggest(f"t{i}") for i in range(12)]
    assert len(record) == 1
    for i, cfg in enumerate(configs):
        assert -3 <= cfg["x"] <= 3 and 1e-4 <= cfg["lr"] <= 1e-1
        assert isinstance(cfg["layers"], int) and 1 <= cfg["layers"] <= 8
        assert cfg["act"] in ("relu", "gelu") and cfg["fixed"] == 7
        searcher.on_trial_complete(f"t{i}", {"loss": loss(cfg)})
    searcher.on_trial_complete("t3", {"loss": 0.0})  # a repeat for a finished trial changes nothing
    assert searcher.optimizer.n_evals == 12


def test_quantised_domains_keep_tunes_bounds_and_grids():
    space = {
        "qu": tune.quniform(0.2, 1.0, 0.2),  # multiples of 0.2 in [0.2, 1.0]
        "qlu": tune.qloguniform(1e-3, 1.0, 1e-3),
        "qri": tune.qrandint(0, 20, 5),  # 0, 5, …, 20: upper inclusive for q > 1
        "qlri": tune.qlograndint(2, 64, 2),  # even numbers, log-spaced
        "ri": tune.randint(0, 3),  # 0, 1, 2: upper exclusive
        "lri": tune.lograndint(1, 100),
    }
    searcher = GenerativeSearch(space, metric="loss", mode="min", seed=0)
    seen = {k: set() for k in space}
    for i in range(200):
        cfg = searcher.suggest(f"t{i}")
        for k, v in cfg.items():
            seen[k].add(v)
        searcher.on_trial_complete(f"t{i}", {"loss": float(sum(cfg.values()))})
    assert all(0.2 - 1e-9 <= v <= 1.0 + 1e-9 and abs(v / 0.2 - round(v / 0.2)) < 1e-9 for v in seen["qu"])
    assert all(1e-3 - 1e-12 <= v <= 1.0 and abs(v / 1e-3 - round(v / 1e-3)) < 1e-6 for v in seen["qlu"])
    assert seen["qri"] <= {0, 5, 10, 15, 20} and {0, 20} <= seen["qri"]
    assert all(isinstance(v, int) and v % 2 == 0 and 2 <= v <= 64 for v in seen["qlri"])
    assert seen["ri"] == {0, 1, 2}
    assert all(isinstance(v, int) and 1 <= v <= 99 for v in seen["lri"])


def test_evaluated_points_are_told_as_external_rows():
    searcher = GenerativeSearch(SPACE, metric="loss", mode="min", seed=0)
    best = {"x": 1.0, "lr": 1e-2, "layers": 5, "act": "gelu", "fixed": 7}
    searcher.add_evaluated_point(best, 0.0)
    searcher.add_evaluated_point({**best, "x": 2.0}, 1.0, error=True)
    assert searcher.optimizer.n_evals == 2 and searcher.optimizer.n_failed == 1
    values, _ = searcher.search_space.decode(searcher.optimizer.best.x)
    assert values["act"] == "gelu" and values["layers"] == 5 and values["x"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="lack"):
        searcher.add_evaluated_point({"x": 0.0}, 1.0)


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
    assert after_first == after_second
    wrong = GenerativeSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min")
    with pytest.raises(ValueError, match="coordinates"):
        wrong.restore(str(tmp_path / "s.npz"))


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="mode"):
        GenerativeSearch(SPACE, metric="loss", mode="up")
    with pytest.raises(ValueError, match="searchable"):
        GenerativeSearch({"noise": tune.randn()}, metric="loss", mode="min")
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
            param_space=SPACE,
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


def test_no_configuration_is_suggested_twice_until_the_space_is_exhausted_across_a_restore(tmp_path):
    space = {"x": tune.randint(0, 10), "y": tune.randint(0, 10)}  # 100 configurations

    def batch(searcher: GenerativeSearch, start: int) -> list[tuple]:
        ids = [f"t{start + i}" for i in range(8)]
        configs = [searcher.suggest(i) for i in ids]  # eight running at once
        for i, c in zip(ids, configs):
            searcher.on_trial_complete(i, {"loss": (c["x"] - 3) ** 2 + 0.5 * (c["y"] - 7) ** 2})
        return [(c["x"], c["y"]) for c in configs]

    first = GenerativeSearch(space, metric="loss", mode="min", seed=0)
    seen = [c for b in range(6) for c in batch(first, 8 * b)]
    first.save(str(tmp_path / "s.npz"))
    second = GenerativeSearch(space, metric="loss", mode="min", seed=0)
    second.restore(str(tmp_path / "s.npz"))  # what was used is read back from the optimizer's record
    seen += [c for b in range(6, 12) for c in batch(second, 8 * b)]
    with pytest.warns(UserWarning, match="every configuration"):
        seen += batch(second, 96)
    assert len(set(seen[:100])) == 100 and second.repeats == 4 and second.duplicates_skipped > 0
    assert second.optimizer.n_evals == 104 and second.optimizer.n_asked <= 104 + second.optimizer.popsize


@pytest.mark.parametrize(
    ("domain", "values"),
    [
        (tune.qloguniform(1, 20, 1), [float(k) for k in range(1, 21)]),
        (tune.qloguniform(0.1, 2.0, 0.1), [k * 0.1 for k in range(1, 21)]),
        (tune.qlograndint(2, 40, 2), list(range(2, 41, 2))),
    ],
)
def test_a_log_quantised_domain_is_a_grid_each_of_whose_values_is_suggested_once(domain, values):
    searcher = GenerativeSearch({"v": domain}, metric="loss", mode="min", seed=0)
    seen = []
    for i in range(20):  # 20 values: every one before any repeat
        v = searcher.suggest(f"t{i}")["v"]
        seen.append(v)
        searcher.on_trial_complete(f"t{i}", {"loss": (np.log(v) - 1.5) ** 2})
    assert sorted(seen) == values and all(type(v) is type(values[0]) for v in seen)
    searcher.add_evaluated_point({"v": values[4]}, 0.0)  # a value read back onto its level
    assert searcher.search_space.decode(searcher.optimizer.evaluations.x[-1])[0]["v"] == 5
