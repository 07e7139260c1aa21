"""AKD: a policy-gradient controller with the KD-guided, latency-aware reward (Liu et al., CVPR 2020).

"Search to Distill: Pearls are Everywhere but not the Eyes" trains a controller with PPO; each
sampled student is distilled from the teacher and rewarded with MnasNet's soft latency objective::

    reward = acc_KD * (latency / target) ** w,   w = -0.07

Here: REINFORCE with a moving-average baseline (the issue allows it) over a per-edge categorical
policy (6 edges x 5 ops of logits); ``acc_KD`` is the validation accuracy the bench returns for the
pair under search (KD-trained students), latency the table's measured latency per image. The target
latency defaults to the median over the architectures on offer (``target_latency_ms`` sets it).
Advantages are normalised by a running standard deviation (so one learning rate fits every pair),
and each new student is drawn from the policy restricted to architectures not yet paid for (a
tabular adaptation: the controller would otherwise re-sample, and re-pay for, the same student).
The runner's incumbent is still the best validation accuracy, as for every searcher.
"""

from __future__ import annotations

import numpy as np

from danas_bench.core import space
from danas_bench.search import Ask, Searcher, sample_policy


class AKD(Searcher):
    name = "akd"
    defaults = {
        "latency_weight": -0.07,
        "target_latency_ms": None,
        "lr": 0.3,
        "baseline_decay": 0.9,
        "entropy_weight": 0.0,
    }

    def setup(self, problem, rng: np.random.Generator) -> None:
        self.logits = np.zeros((space.N_EDGES, space.N_OPS))
        lat = problem.latency()
        self.target = float(self.target_latency_ms) if self.target_latency_ms else float(np.median(lat))
        self.baseline: float | None = None
        self.var = 0.0
        self.paid = np.zeros(len(problem.archs), dtype=bool)

    def reward(self, arch: int, acc: float) -> float:
        lat = float(self.problem.latency()[self.problem.position(arch)])
        return acc * (max(lat, 1e-9) / self.target) ** self.latency_weight

    def ask(self):
        a = sample_policy(self.problem, self.rng, self.logits, self.paid)
        return None if a is None else Ask(a)

    def tell(self, ask: Ask, value: float) -> None:
        self.paid[self.problem.position(ask.arch)] = True
        r = self.reward(ask.arch, value)
        if self.baseline is None:
            self.baseline = r
        adv = r - self.baseline
        self.var = self.baseline_decay * self.var + (1 - self.baseline_decay) * adv * adv
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * r
        scale = np.sqrt(self.var) + 1e-8
        ops = np.asarray(space.index_to_ops(ask.arch))
        p = np.exp(self.logits - np.logaddexp.reduce(self.logits, axis=1, keepdims=True))
        grad = -p
        grad[np.arange(space.N_EDGES), ops] += 1.0  # d log pi(arch) / d logits
        step = (adv / scale) * grad
        if self.entropy_weight:
            logp = np.log(p + 1e-12)
            ent = -(p * logp).sum(1, keepdims=True)
            step += self.entropy_weight * (-p * (logp + ent))  # d entropy / d logits
        self.logits += self.lr * step
