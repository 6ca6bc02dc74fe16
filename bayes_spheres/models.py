"""The paper's Bayesian logistic regression on squared features, with its four priors.

Every model is a callable ``model(phi, y=None, subsample_size=None)`` over standardised
features ``phi`` [N, D] and exposes the sites ``w`` [D] and ``b`` [] (deterministic where
derived), so that every inference method yields the same kind of ensemble.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer.reparam import LocScaleReparam
from torch import Tensor

from bayes_spheres import checks


class ModelName(StrEnum):
    FLAT = "flat"
    HIER_CENTERED = "hier_centered"
    HIER_NONCENTERED = "hier_noncentered"
    SHARED_MEAN = "shared_mean"


def activation(phi: Tensor, w: Tensor, b: Tensor | float = 0.0) -> Tensor:
    """``a = phi w + b``: the one activation all models share (Sec. 3); broadcasts members."""
    return phi @ w.transpose(-1, -2) + b if w.dim() > 1 else phi @ w + b


class SphereModel:
    """Base class: a prior over ``w`` (subclass hook) + optional bias + Bernoulli likelihood."""

    name: ModelName

    def __init__(self, bias: bool = True, bias_scale: float = 10.0) -> None:
        _check_positive("bias_scale", bias_scale)
        self.bias = bias
        self.bias_scale = bias_scale

    def weights(self, dim: int, like: Tensor) -> Tensor:
        """Sample ``w`` [dim] (and any hyper-parameters) from the prior.

        Written to broadcast: conditioned on latents with leading batch dimensions, the log
        densities come out batched (the batched bootstrap relies on this)."""
        raise NotImplementedError

    def prior(self, dim: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """All latent sites: returns ``(w, b)``."""
        w = self.weights(dim, like)
        if self.bias:
            b = pyro.sample("b", dist.Normal(like.new_zeros(()), self.bias_scale))
        else:
            b = pyro.deterministic("b", like.new_zeros(()))
        return w, b

    def __call__(
        self, phi: Tensor, y: Tensor | None = None, subsample_size: int | None = None
    ) -> Tensor:
        n, dim = phi.shape
        w, b = self.prior(dim, phi)
        with pyro.plate("data", n, subsample_size=subsample_size) as idx:
            obs = None if y is None else y[idx]
            return pyro.sample("y", self.likelihood(activation(phi[idx], w, b)), obs=obs)

    def pointwise_log_likelihood(
        self, samples: dict[str, Tensor], phi: Tensor, y: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """:func:`pointwise_log_likelihood` of this model at every draw at once, from the
        draws' ``w`` and ``b`` (the sites every model exposes) and :meth:`likelihood`: two
        products instead of a trace per draw (0.06 against 1 ms a draw at D = 500, N =
        1,000). Checked against the traced model at the first and last draw; where they
        differ (a subclass with its own likelihood), the traced model's, draw by draw."""
        w = samples["w"]
        chains, draws = w.shape[:2]
        b = samples.get("b", w.new_zeros(()))
        logits = activation(phi, w.reshape(-1, w.shape[-1]), b.reshape(-1))  # [N, S]
        fast = self.likelihood(logits).log_prob(y[:, None]).T.reshape(chains, draws, -1)
        ends = {name: value[:, [0, -1]][[0, -1], :] for name, value in samples.items()}
        traced, observed = pointwise_log_likelihood(self, ends, phi, y)
        if set(traced) == {"y"} and torch.allclose(
            traced["y"], fast[:, [0, -1]][[0, -1], :], rtol=1e-9, atol=1e-9
        ):
            return {"y": fast}, observed
        return pointwise_log_likelihood(self, samples, phi, y)

    def likelihood(self, logits: Tensor) -> dist.Bernoulli:
        """``p(y | a)``: Bernoulli with logits ``a`` (the one likelihood; Bootstrap's weighted
        objective and Figure 1's background evaluate this distribution)."""
        return dist.Bernoulli(logits=logits)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Flat(SphereModel):
    """``w ~ N(0, sigma^2 I)``: the paper's "standard model" with a broad prior."""

    name = ModelName.FLAT

    def __init__(self, sigma: float = 10.0, bias: bool = True, bias_scale: float = 10.0) -> None:
        super().__init__(bias, bias_scale)
        _check_positive("sigma", sigma)
        self.sigma = sigma

    def weights(self, dim: int, like: Tensor) -> Tensor:
        loc = like.new_zeros(dim)
        return pyro.sample("w", dist.Normal(loc, self.sigma).to_event(1))


class Hierarchical(SphereModel):
    """``s ~ LogNormal(log median, log_sd)``, ``w | s ~ N(0, s^2 I)`` (paper, "Hierarchical model").

    ``centered=False`` is the same model written as direction x distance, ``w = s v`` with
    ``v ~ N(0, I)``, obtained by :class:`~pyro.infer.reparam.LocScaleReparam` (the direction is
    the site ``w_decentered``); ``w`` is then a deterministic site.
    """

    def __init__(
        self,
        centered: bool = True,
        scale_median: float = 10.0,
        scale_log_sd: float = 1.0,
        learn_prior: bool = False,
        bias: bool = True,
        bias_scale: float = 10.0,
    ) -> None:
        super().__init__(bias, bias_scale)
        _check_positive("scale_median", scale_median)
        _check_positive("scale_log_sd", scale_log_sd)
        self.centered = centered
        self.scale_median = scale_median
        self.scale_log_sd = scale_log_sd
        self.learn_prior = learn_prior

    @property
    def name(self) -> ModelName:  # type: ignore[override]
        return ModelName.HIER_CENTERED if self.centered else ModelName.HIER_NONCENTERED

    def weights(self, dim: int, like: Tensor) -> Tensor:
        loc = like.new_tensor(math.log(self.scale_median))
        scale = like.new_tensor(self.scale_log_sd)
        if self.learn_prior:
            # Empirical Bayes: p(s)'s parameters are fit with the ELBO, so the prior moves to
            # match the variational family q(s) (paper, "Hierarchical model").
            loc = pyro.param("s_prior_loc", loc)
            scale = pyro.param("s_prior_scale", scale, constraint=constraints.positive)
        s = pyro.sample("s", dist.LogNormal(loc, scale))
        return pyro.sample("w", dist.Normal(like.new_zeros(dim), s[..., None]).to_event(1))

    def prior(self, dim: int, like: Tensor) -> tuple[Tensor, Tensor]:
        if self.centered:
            return super().prior(dim, like)
        config = {"w": LocScaleReparam(centered=0.0)}
        return poutine.reparam(super().prior, config=config)(dim, like)


class SharedMean(SphereModel):
    """``mu ~ N(0, sigma_mu^2)``, ``w_i | mu ~ N(mu, sigma^2)``: the "non-zero mean" prior."""

    name = ModelName.SHARED_MEAN

    def __init__(
        self,
        sigma_mu: float = 10.0,
        sigma: float = 1.0,
        bias: bool = True,
        bias_scale: float = 10.0,
    ) -> None:
        super().__init__(bias, bias_scale)
        _check_positive("sigma_mu", sigma_mu)
        _check_positive("sigma", sigma)
        self.sigma_mu = sigma_mu
        self.sigma = sigma

    def weights(self, dim: int, like: Tensor) -> Tensor:
        mu = pyro.sample("mu", dist.Normal(like.new_zeros(()), self.sigma_mu))
        loc = mu[..., None].expand(*mu.shape, dim)
        return pyro.sample("w", dist.Normal(loc, self.sigma).to_event(1))


def _check_positive(name: str, value: float) -> None:
    checks.positive(name, value)  # a SettingError: the config puts the node's key in front


def prior_trace(model: SphereModel, latents: dict[str, Tensor], dim: int) -> poutine.Trace:
    """The trace of ``model.prior`` conditioned on draws of its latent sites (constrained
    space, any leading batch dimensions: the priors broadcast), so every derived site and
    every site's log density is the model's own."""
    # on the CPU: a model with no latent sites
    like = next(iter(latents.values())) if latents else torch.zeros(())
    return poutine.trace(poutine.condition(model.prior, data=latents)).get_trace(dim, like)


def weights_of(model: SphereModel, latents: dict[str, Tensor], dim: int) -> tuple[Tensor, Tensor]:
    """``(w [..., D], b [...])`` that ``model`` derives from draws of its latent sites
    (constrained space, batch dimensions ``...``); ``b`` is 0 where the model has no bias."""
    w, b = prior_trace(model, latents, dim).nodes["_RETURN"]["value"]
    return w, b.expand(w.shape[:-1])


def pointwise_log_likelihood(
    model: Callable[..., Any], samples: dict[str, Tensor], *args: Any, **kwargs: Any
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``log p(y_n | draw)`` of each observed site of ``model(*args, **kwargs)`` at every draw,
    and the observed values: ``({site: [chain, draw, N]}, {site: [N]})``, the
    ``log_likelihood`` and ``observed_data`` groups ``az.from_pyro`` writes.

    ``samples`` holds draws [chain, draw, ...] of the model's sites (latent or derived, as
    :class:`~bayes_spheres.inference.Posterior` keeps them); each draw conditions the model
    and the observed sites' densities are read off its trace, so whatever likelihood a model
    states is the one evaluated. Sites named in ``samples`` and deterministic sites are not
    data. Draw by draw: no assumption about how a model broadcasts.
    """
    chains, draws = next(iter(samples.values())).shape[:2]
    per_draw: dict[str, list[Tensor]] = {}
    observed: dict[str, Tensor] = {}
    with torch.no_grad():
        for chain in range(chains):
            for index in range(draws):
                draw = {name: value[chain, index] for name, value in samples.items()}
                trace = poutine.trace(poutine.condition(model, data=draw)).get_trace(
                    *args, **kwargs
                )
                for name, site in trace.nodes.items():
                    if (
                        site["type"] == "sample"
                        and site["is_observed"]
                        and name not in draw
                        and not site["infer"].get("_deterministic", False)
                    ):
                        log_prob = site["fn"].log_prob(site["value"])
                        per_draw.setdefault(name, []).append(log_prob)
                        observed[name] = site["value"]
    if not per_draw:
        raise ValueError(f"{model!r} has no observed site for these arguments")
    log_likelihood = {
        name: torch.stack(values).reshape(chains, draws, *values[0].shape)
        for name, values in per_draw.items()
    }
    return log_likelihood, observed
