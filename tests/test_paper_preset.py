"""``preset="paper"`` pins the reference implementation's choices, one test per choice (docs/method.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evogm_opt import PRESETS, GenerativeOptimizer
from evogm_opt.evogm.generator import GeneratorConfig, GeneratorPair, _forward
from tests.conftest import sphere

DIM = 4


def paper(**kw) -> GenerativeOptimizer:
    return GenerativeOptimizer(DIM, preset="paper", seed=0, **kw)


def tell_all(opt: GenerativeOptimizer, x: np.ndarray) -> list[float]:
    y = [sphere(r) for r in x]
    opt.tell(x, y)
    return y


def test_paper_hyperparameters_are_the_reference_defaults():
    cfg = PRESETS["paper"]
    gen = cfg.generator
    assert gen.hidden == (128, 256, 256, 256, 128)
    assert (gen.learning_rate, gen.epochs) == (1e-4, 200)
    assert (gen.cycle_weight, gen.pull_weight, gen.dual) == (100.0, 1.0, True)
    assert cfg.winner_fraction == 0.3
    assert (cfg.iterations_per_round, cfg.n_rounds) == (3, 2)
    assert cfg.reset_history_each_round and cfg.reinit_each_round
    assert cfg.proposal_noise == 0.0 and not cfg.adapt_noise and not cfg.deduplicate


def test_paper_hybrid_init_is_one_hots_then_uniform_then_random():
    opt = paper()
    x = opt.ask()
    assert x.shape == (2 * DIM, DIM)
    np.testing.assert_array_equal(x[:DIM], np.eye(DIM))
    np.testing.assert_array_equal(x[DIM], np.full(DIM, 1.0 / DIM))
    rest = x[DIM + 1 :]
    assert len(rest) == DIM - 1 and np.all(np.abs(rest) <= 1) and len(np.unique(rest)) == rest.size


def test_paper_hybrid_init_is_cut_to_popsize():
    x = GenerativeOptimizer(DIM, preset="paper", popsize=3, seed=0).ask()
    np.testing.assert_array_equal(x, np.eye(DIM)[:3])


def test_paper_generator_architecture_relu_hidden_tanh_output():
    pair = GeneratorPair(DIM, PRESETS["paper"].generator, np.random.default_rng(0))
    weights = pair.params[0::2]
    assert [tuple(w.shape) for w in weights] == [
        (2, DIM, 128),
        (2, 128, 256),
        (2, 256, 256),
        (2, 256, 256),
        (2, 256, 128),
        (2, 128, DIM),
    ]
    x = np.random.default_rng(1).uniform(-1, 1, (5, DIM))
    h = x.astype(np.float32)
    for i, (w, b) in enumerate(zip(pair.params[0::2], pair.params[1::2])):
        h = h @ w[0].numpy() + b[0].numpy()
        h = np.maximum(h, 0) if i < 5 else np.tanh(h)
    np.testing.assert_allclose(pair.propose(x), h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("dim", "hidden", "dual"), [(3, (128, 256, 256, 256, 128), True), (5, (7, 3), False)])
def test_the_checkpoint_check_knows_the_buffer_size_and_the_adam_state_of_an_architecture(dim, hidden, dual):
    config = GeneratorConfig(hidden=hidden, dual=dual)
    pair = GeneratorPair(dim, config, np.random.default_rng(0))
    assert GeneratorPair.buffer_size(dim, config) == pair.flat.numel()
    GeneratorPair.check_state(pair.state(), dim, config)  # before Adam's first step: empty moments
    rng = np.random.default_rng(1)
    pair.train(rng.uniform(-1, 1, (4, dim)), rng.uniform(-1, 1, (8, dim)), rng)
    GeneratorPair.check_state(pair.state(), dim, config)
    with pytest.raises(ValueError, match=r"generators\.weights has"):
        GeneratorPair.check_state(pair.state(), dim + 1, config)  # another dimension's architecture


@pytest.mark.parametrize("dual", [True, False])
def test_hand_written_gradients_equal_autograd(dual):
    pair = GeneratorPair(DIM, GeneratorConfig(dual=dual), np.random.default_rng(2))
    rng = np.random.default_rng(3)
    winners = torch.tensor(rng.uniform(-1, 1, (6, DIM)), dtype=torch.float32)
    losers = torch.tensor(rng.uniform(-1, 1, (6, DIM)), dtype=torch.float32)
    loss, grads = pair.loss_and_grads(winners, losers)
    ref_loss, ref_grads = pair.autograd_loss(winners, losers)
    assert loss == pytest.approx(float(ref_loss), rel=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_paper_loss_is_100_cycle_plus_pull_to_winner_mean():
    pair = GeneratorPair(DIM, PRESETS["paper"].generator, np.random.default_rng(4))
    rng = np.random.default_rng(5)
    w = rng.uniform(-1, 1, (3, DIM)).astype(np.float32)
    lo = rng.uniform(-1, 1, (3, DIM)).astype(np.float32)

    def net(slot, x):
        return _forward([p[slot : slot + 1] for p in pair.params], torch.tensor(x)[None])[-1][0].numpy()

    cycle = np.mean((net(1, net(0, lo)) - lo) ** 2) + np.mean((net(0, net(1, w)) - w) ** 2)
    pull = np.mean((net(0, lo) - w.mean(axis=0)) ** 2)
    loss, _ = pair.loss_and_grads(torch.tensor(w), torch.tensor(lo))
    assert loss == pytest.approx(100 * cycle + pull, rel=1e-5)


def test_paper_winners_are_top_30_percent_and_losers_subsampled_to_winner_count(monkeypatch):
    seen = []
    original = GeneratorPair.loss_and_grads

    def spy(self, winners, losers):
        seen.append((winners.numpy().copy(), losers.numpy().copy()))
        return original(self, winners, losers)

    monkeypatch.setattr(GeneratorPair, "loss_and_grads", spy)
    opt = paper()
    x0 = opt.ask()
    y0 = tell_all(opt, x0)
    opt.ask()
    assert len(seen) == 200  # 200 full-batch epochs
    n_w = max(1, int(0.3 * len(y0)))
    order = np.argsort(y0, kind="stable")
    winners = x0[order[:n_w]].astype(np.float32)
    losers = x0[order[n_w:]].astype(np.float32)
    for w, lo in seen:
        np.testing.assert_array_equal(w, winners)
        assert len(lo) == n_w
        assert all(any(np.array_equal(r, c) for c in losers) for r in lo)
        assert len({r.tobytes() for r in lo}) == n_w  # subsampled without replacement
    assert len({lo.tobytes() for _, lo in seen}) > 1  # a fresh subsample per epoch


def test_paper_candidates_are_g_lw_of_the_elitist_population():
    opt = paper()
    x0 = opt.ask()
    y0 = tell_all(opt, x0)
    x1 = opt.ask()
    population = x0[np.argsort(y0, kind="stable")]  # best P of H, best first
    np.testing.assert_allclose(x1, np.clip(opt.generators.propose(population), -1, 1), rtol=0, atol=1e-12)
    y1 = tell_all(opt, x1)
    x2 = opt.ask()
    everything = np.concatenate([x0, x1])
    top = everything[np.argsort(np.concatenate([y0, y1]), kind="stable")[: opt.popsize]]
    np.testing.assert_allclose(x2, np.clip(opt.generators.propose(top), -1, 1), rtol=0, atol=1e-12)


def test_paper_keeps_one_adam_for_the_round_and_new_generators_each_round():
    opt = paper()
    steps = []
    generators = []
    for _ in range(8):
        x = opt.ask()
        if opt.generators is not None:
            steps.append(opt.generators.state()["adam_step"])
            generators.append(opt.generators)  # the objects, not id(): a freed object's id can be reused
        tell_all(opt, x)
    assert steps == [200, 400, 600, 200, 400, 600]
    assert all(g is generators[0] for g in generators[:3])
    assert all(g is generators[3] for g in generators[3:])
    assert generators[0] is not generators[3]


def test_paper_resets_history_each_round_and_shifts_basis_to_top_n():
    shifts = []
    opt = paper(on_basis_shift=shifts.append)
    xs, ys = [], []
    for _ in range(4):  # round 1: init + T = 3 iterations
        x = opt.ask()
        xs.append(x)
        ys += tell_all(opt, x)
    assert opt.round == 1 and opt.iteration == 0
    assert len(opt.history[1]) == 0  # history reset
    everything = np.concatenate(xs)
    top = everything[np.argsort(ys, kind="stable")[:DIM]]
    assert len(shifts) == 1
    np.testing.assert_allclose(shifts[0], top, atol=1e-12)
    np.testing.assert_allclose(opt.basis.matrix, top, atol=1e-12)
    # round 2 starts with the hybrid init *in the new basis*: its one-hots are round 1's top-N (re-evaluated)
    x = opt.ask()
    np.testing.assert_allclose(x[:DIM], top, atol=1e-12)
    np.testing.assert_allclose(x[DIM], top.mean(axis=0), atol=1e-12)


def test_paper_runs_r2_t3_rounds_for_160_evaluations_at_n10_and_stops():
    opt = GenerativeOptimizer(10, preset="paper", seed=0, config=None)
    shifts = []
    opt.on_basis_shift = shifts.append
    generations = 0
    while not opt.stop():
        x = opt.ask()
        tell_all(opt, x)
        generations += 1
    assert opt.n_evals == 160 and generations == 8
    assert len(shifts) == 1  # no shift after the last round
    assert "n_rounds=2" in opt.stop_reason


def test_shifted_points_outside_the_box_are_clipped_into_it():
    opt = paper()
    opt.basis.matrix[:] = 3.0 * np.eye(DIM)  # effective coefficients up to ±3
    opt.basis._pinv = None
    x = opt.ask()
    assert np.all(np.abs(x) <= 1.0)
    np.testing.assert_array_equal(x[:DIM], np.eye(DIM))  # 3·e_i clipped to e_i
