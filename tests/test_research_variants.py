"""The bench's research variants of EvoGM (evogm_bench.research.variants): the no-generator measurement and the
paper's two ablations, built on the core's public seam (``GenerativeOptimizer.generate``) or as configurations."""

from __future__ import annotations

import numpy as np
import pytest
from evogm_bench.peers import PEERS
from evogm_bench.research import variants
from evogm_bench.research.variants import NoGenerator

from evogm_opt import PRESETS, GenerativeOptimizer
from tests.conftest import sphere


def run(opt: GenerativeOptimizer) -> GenerativeOptimizer:
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    return opt


def test_without_the_generator_nothing_is_trained_and_the_search_still_runs():
    ablation = run(NoGenerator(3, seed=0, max_evals=60))
    assert ablation.generators is None and np.isnan(ablation.last_loss)
    assert ablation.n_evals == 60 and ablation.best.y < sphere(np.zeros(3))
    assert ablation.config == PRESETS["default"]  # all else equal


def test_the_generator_is_what_differs():
    with_generator = run(GenerativeOptimizer(3, seed=0, max_evals=60))
    without = run(NoGenerator(3, seed=0, max_evals=60))
    assert np.isfinite(with_generator.last_loss)  # it trained (generators are dropped at each round end)
    assert not np.array_equal(with_generator.evaluations.x, without.evaluations.x)
    first = with_generator.popsize  # the initial population is the same for both
    np.testing.assert_array_equal(with_generator.evaluations.x[:first], without.evaluations.x[:first])


def test_a_no_generator_run_resumes_exactly_under_its_own_name(tmp_path):
    opt = NoGenerator(3, seed=2, max_evals=60)
    for _ in range(3):
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    opt.save(tmp_path / "c.ckpt")
    twin = NoGenerator.load(tmp_path / "c.ckpt")
    assert opt.state_dict()["optimizer"] == "evogm-no-generator"
    np.testing.assert_array_equal(twin.ask(), opt.ask())


def test_single_generator_ablation_has_no_backward_generator():
    opt = variants.build("evogm-paper-single-generator", 4, seed=0)
    x = opt.ask()
    opt.tell(x, [sphere(row) for row in x])
    opt.ask()
    assert opt.generators.params[0].shape[0] == 1 and not opt.config.generator.dual


def test_no_rounds_ablation_runs_t_times_r_iterations_in_one_round():
    shifts = []
    opt = run(variants.build("evogm-paper-no-rounds", 4, seed=0, on_basis_shift=shifts.append))
    assert opt.n_evals == 2 * 4 * (1 + 6) and shifts == []


def test_the_bench_runs_each_variant_as_a_peer_past_the_papers_rounds():
    for name in variants.VARIANTS:
        peer = PEERS[name].build(2, 0, 40)
        assert peer.opt.max_evals == 40 and peer.opt.maximize and peer.opt.config.n_rounds is None
    with pytest.raises(ValueError, match="unknown research variant"):
        variants.build("evogm-no-cycle", 2)
