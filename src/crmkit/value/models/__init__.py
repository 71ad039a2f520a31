"""Probabilistic customer-lifetime-value models fitted by maximum likelihood.

Needs the ``models`` extra (numpy and scipy); see ``docs/value_models.md``.

* ``BetaGeo`` (BG/NBD), ``ModifiedBetaGeo`` (MBG/NBD), ``ParetoNBD``: non-contractual
  purchasing in continuous time, fitted to (frequency, recency, T).
* ``BetaGeoBetaBinom`` (BG/BB): the same in discrete time (frequency, recency, n_periods).
* ``ShiftedBetaGeometric`` (sBG): contractual retention.
* ``GammaGamma``: average transaction value.
* ``customer_lifetime_value``: discounted value from a transaction and a spend model.
* ``diagnostics``: period transactions, P(alive) history, cumulative purchases, and the
  spend-frequency correlation Gamma-Gamma assumes away (``crmkit.value.plots`` draws them).

Every model takes ``penalizer_coef`` (an L2 penalty on the parameters, as in lifetimes).
"""

from crmkit.value.models import datasets, diagnostics
from crmkit.value.models._base import ConvergenceWarning, NotFittedError
from crmkit.value.models.bgbb import BetaGeoBetaBinom
from crmkit.value.models.bgnbd import BetaGeo, ModifiedBetaGeo
from crmkit.value.models.clv import customer_lifetime_value
from crmkit.value.models.diagnostics import spend_frequency_correlation
from crmkit.value.models.gammagamma import GammaGamma, SpendFrequencyWarning
from crmkit.value.models.paretonbd import ParetoNBD
from crmkit.value.models.sbg import ShiftedBetaGeometric

__all__ = [
    "BetaGeo",
    "BetaGeoBetaBinom",
    "ConvergenceWarning",
    "GammaGamma",
    "ModifiedBetaGeo",
    "NotFittedError",
    "ParetoNBD",
    "ShiftedBetaGeometric",
    "SpendFrequencyWarning",
    "customer_lifetime_value",
    "datasets",
    "diagnostics",
    "spend_frequency_correlation",
]
