"""Shared particle bookkeeping for the two swarm baselines (PSO-Merging, Model Swarms).

A generation is one position per particle. Results update the particle they were asked for; rows never asked
(or asked for an older generation) only inform the global best. The swarm moves once every particle of the
generation has a result, or once ``popsize`` results have arrived, whichever comes first.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from evogm_opt import _state
from evogm_opt.base import Optimizer


class SwarmOptimizer(Optimizer):
    payload_width = 2  # particle index (-1: extra random ask), generation index

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generation = 0
        positions = np.clip(self._initial_positions(), -1.0, 1.0)  # normalised coordinates
        self.x = positions
        self.v = self._initial_velocities(positions)
        n = len(positions)
        self.pbest = positions.copy()
        self.pbest_y = np.full(n, np.inf)
        self.gbest = positions[0].copy()
        self.gbest_y = np.inf
        self.last_y = np.full(n, np.inf)
        self.stale = np.zeros(n, dtype=np.int64)  # generations since the personal best improved
        self.asked = np.zeros(n, dtype=bool)
        self.told = np.zeros(n, dtype=bool)
        self.told_count = 0

    @abc.abstractmethod
    def _initial_positions(self) -> np.ndarray:
        """Particles in normalised coordinates, shape (popsize, dim)."""

    def _initial_velocities(self, positions: np.ndarray) -> np.ndarray:
        return np.zeros_like(positions)

    @abc.abstractmethod
    def _move(self) -> None:
        """Update ``self.x`` and ``self.v`` from the personal and global bests."""

    # ------------------------------------------------------------------ protocol hooks
    def _propose(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        waiting = np.flatnonzero(~self.asked)[:n]
        self.asked[waiting] = True
        u = self.x[waiting]
        index = waiting.astype(float)
        extra = n - len(waiting)
        if extra:
            u = np.concatenate([u, self.rng.uniform(-1.0, 1.0, (extra, self.dim))])
            index = np.concatenate([index, np.full(extra, -1.0)])
        payload = np.stack([index, np.full(n, float(self.generation))], axis=1)
        return self.box.to_user(u), payload

    def _observe(self, x: np.ndarray, y: np.ndarray, payload: np.ndarray, asked: np.ndarray) -> None:
        u = self.box.to_unit(x)
        for i in range(len(y)):
            particle = int(payload[i, 0]) if asked[i] and payload[i, 1] == self.generation else -1
            if particle >= 0 and not self.told[particle]:
                self.told[particle] = True
                self.last_y[particle] = y[i]
                if y[i] < self.pbest_y[particle]:
                    self.pbest_y[particle] = y[i]
                    self.pbest[particle] = u[i]
                    self.stale[particle] = -1  # becomes 0 after this generation's increment
            if y[i] < self.gbest_y:
                self.gbest_y = float(y[i])
                self.gbest = u[i].copy()
            self.told_count += 1
        if self.told.all() or self.told_count >= self.popsize:
            self.stale += 1
            self._move()
            self.x = np.clip(self.x, -1.0, 1.0)
            self.generation += 1
            self.last_y[~self.told] = np.inf
            self.asked[:] = False
            self.told[:] = False
            self.told_count = 0

    # ------------------------------------------------------------------ state
    def _algorithm_state(self) -> dict[str, Any]:
        return {
            name: (value.copy() if isinstance(value, np.ndarray) else value)
            for name, value in self._swarm_fields().items()
        }

    def _swarm_fields(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "x": self.x,
            "v": self.v,
            "pbest": self.pbest,
            "pbest_y": self.pbest_y,
            "gbest": self.gbest,
            "gbest_y": self.gbest_y,
            "last_y": self.last_y,
            "stale": self.stale,
            "asked": self.asked,
            "told": self.told,
            "told_count": self.told_count,
        }

    def _check_algorithm_state(self, state: dict[str, Any]) -> None:
        """Shapes as this swarm's, finite positions and velocities in the normalised box, counters in range, and
        pending asks that name a particle of this swarm."""
        require = _state.require
        for name, current in self._swarm_fields().items():
            if isinstance(current, np.ndarray):
                finite = name not in ("pbest_y", "last_y")  # +inf: not told yet / failed
                value = _state.array(state[name], name, current.shape, finite=finite, dtype=current.dtype)
                if not finite:
                    require(not np.isnan(value).any(), name, "holds NaN (failures are +inf)")
                if name in ("x", "pbest"):
                    require(np.all(np.abs(value) <= 1.0 + 1e-9), name, "has rows outside the normalised box [-1, 1]")
        _state.array(state["gbest"], "gbest", (self.dim,))
        _state.number(state["gbest_y"], "gbest_y", finite=False)
        generation = _state.count(state["generation"], "generation")
        told = _state.count(state["told_count"], "told_count")
        require(told < max(self.popsize, 1), "told_count", f"is {told}; the swarm moves at {self.popsize}")
        particle, asked_in = self._pending_payload[:, 0], self._pending_payload[:, 1]
        n = len(self.x)
        valid = (particle == np.round(particle)) & (particle >= -1) & (particle < n) & (asked_in <= generation)
        require(valid.all(), "core.pending_payload", f"names particles outside -1..{n - 1} or a later generation")

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        for name, current in self._swarm_fields().items():
            value = state[name]
            if isinstance(current, np.ndarray):
                value = np.asarray(value, dtype=current.dtype)
            setattr(self, name, value)
        self.generation = int(self.generation)
        self.gbest_y = float(self.gbest_y)
        self.told_count = int(self.told_count)
