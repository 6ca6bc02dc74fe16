"""The fast path, fenced off: Bernoulli-logistic likelihoods whose logits are linear in the
latents under a Gaussian prior, read off the Pyro model (:mod:`.logistic_model`), as a target
(:mod:`.logistic`) whose prior is integrated exactly and whose likelihood is taken in the form
that costs least at its sizes (:mod:`.fast_cost`: the stored Gram matrix, its rows on demand,
a low-rank factor, or products with the design; :mod:`.gram`, :mod:`.linear_products`,
:mod:`.linear_trajectory`). Nothing outside this package depends on how."""
