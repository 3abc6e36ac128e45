"""EvoGM and its parts, one job per module, each rule beside its paper section or the research log entry behind it.

- ``config``: :class:`EvoGMConfig`, the presets (``PAPER`` written out in full) and how a run picks one;
- ``history``: :class:`History`, H — the evaluated points the generator and the surrogate learn from;
- ``proposals``: the initial population, exploration noise and its step size, surrogate screening, repeats;
- ``generator``: the loser→winner and winner→loser generators and their training (paper §3.2);
- ``surrogate``: the GP that screens proposals;
- ``basis``: the basis shift (paper §3.3) and the one boundary rule for points it carries out of the box;
- ``optimizer``: :class:`GenerativeOptimizer`, the ask/tell loop over all of them.
"""

from evogm_opt.evogm.basis import Basis, BasisShift, Boundary, fold_into_box
from evogm_opt.evogm.config import DEFAULT, PAPER, PRESETS, EvoGMConfig, resolve
from evogm_opt.evogm.generator import GeneratorConfig, GeneratorPair
from evogm_opt.evogm.history import History
from evogm_opt.evogm.optimizer import AskedBatch, BasisHook, GenerativeOptimizer
from evogm_opt.evogm.surrogate import GaussianProcess

__all__ = [
    "DEFAULT",
    "PAPER",
    "PRESETS",
    "AskedBatch",
    "Basis",
    "BasisHook",
    "BasisShift",
    "Boundary",
    "EvoGMConfig",
    "GaussianProcess",
    "GenerativeOptimizer",
    "GeneratorConfig",
    "GeneratorPair",
    "History",
    "fold_into_box",
    "resolve",
]
