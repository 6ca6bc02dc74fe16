"""Bayesian Adversarial Spheres (Bekasov & Murray, 2018) as a Pyro + Hydra study."""

__version__ = "0.1.0"
