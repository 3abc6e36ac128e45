"""``evogm-opt bench research``: the experiments of docs/research.md that measure more than a peer's records.

A variant that is an optimizer runs as a bench peer (``research/variants.py``); an experiment that looks inside
runs — what an oracle would have recommended, how often the step sits at its ceiling — is a subcommand here.
"""

from __future__ import annotations

import argparse

from evogm_bench.research import oracle_gap, step_at_ceiling

#: subcommand → the module that adds its arguments and runs it
EXPERIMENTS = {"oracle-gap": oracle_gap, "step-at-ceiling": step_at_ceiling}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evogm-opt bench research", description=__doc__.replace("``", ""))
    experiments = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for name, module in EXPERIMENTS.items():
        doc = module.__doc__ or ""
        sub = experiments.add_parser(
            name,
            help=doc.split("\n\n")[0].replace("\n", " "),
            description=doc.replace("``", ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    return parser
