"""Research round three's sequential variants (evogm_bench.research.sequential): the research switches do what
they say (the core's shape itself: tests/test_sequential.py)."""

from __future__ import annotations

import numpy as np
from evogm_bench.peers import PEERS
from evogm_bench.research import variants
from evogm_bench.research.sequential import SequentialConfig, SequentialEvoGM

from tests.conftest import sphere
from tests.test_sequential import run


def test_the_variants_are_bench_peers_and_differ_only_where_they_say():
    for name in variants.SEQUENTIAL:
        assert name in set(PEERS)
    with_gen = run(SequentialEvoGM(2, seed=0, max_evals=20, config=variants.SEQUENTIAL["evogm-seq"][0]))
    nogen = run(SequentialEvoGM(2, seed=0, max_evals=20, config=variants.SEQUENTIAL["evogm-seq-nogen"][0]))
    design = len(with_gen.design)
    np.testing.assert_array_equal(with_gen.evaluations.x[:design], nogen.evaluations.x[:design])
    # the generator is trained and its proposals change where the model-based asks go
    assert with_gen.generators is not None and nogen.generators is None
    assert not np.array_equal(with_gen.evaluations.x[design:], nogen.evaluations.x[design:])


def test_a_batch_told_in_parts_does_not_re_ask_design_rows_and_replaced_asks_are_not_fantasised():
    opt = SequentialEvoGM(3, seed=1, max_evals=40, config=SequentialConfig(initial_points=6))
    first = opt.ask(4)
    opt.tell(first[:2], [sphere(r) for r in first[:2]])
    second = opt.ask(2)  # the design's rows 4 and 5, not rows 2 and 3 again
    np.testing.assert_array_equal(np.concatenate([first, second]), opt.box.to_user(opt.design))
    opt.tell(np.concatenate([first[2:], second]), [sphere(r) for r in np.concatenate([first[2:], second])])
    asked = opt.ask(1)
    replaced = np.clip(asked + 0.01, -1, 1)  # a caller evaluates another row than the one asked
    opt.tell(replaced, [sphere(replaced[0])])
    assert opt.n_pending == 1 and len(opt.fantasies) == 0  # pending in the core, not a fantasy of the next ask


def test_a_research_variant_resumes_exactly_with_its_own_settings(tmp_path):
    config = variants.SEQUENTIAL["evogm-seq-nogen"][0]
    opt = run(SequentialEvoGM(2, seed=0, max_evals=16, config=config), stop_at=10)
    opt.save(tmp_path / "c.npz")
    loaded = SequentialEvoGM.load(tmp_path / "c.npz")
    assert loaded.config == config
    np.testing.assert_array_equal(run(loaded).evaluations.x, run(opt).evaluations.x)
