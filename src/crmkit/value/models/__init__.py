"""Probabilistic customer-lifetime-value models fitted by maximum likelihood.

Needs the ``models`` extra (numpy and scipy); see ``docs/value_models.md``.

* ``BetaGeo`` (BG/NBD), ``ModifiedBetaGeo`` (MBG/NBD), ``ParetoNBD``: non-contractual
  purchasing in continuous time, fitted to (frequency, recency, T).
* ``BetaGeoBetaBinom`` (BG/BB): the same in discrete time (frequency, recency, n_periods).
* ``ShiftedBetaGeometric`` (sBG): contractual retention.
* ``GammaGamma``: average transaction value.
* ``customer_lifetime_value``: discounted value from a transaction and a spend model.
"""

from crmkit.value.models import datasets
from crmkit.value.models._base import ConvergenceWarning, NotFittedError
from crmkit.value.models.bgbb import BetaGeoBetaBinom
from crmkit.value.models.bgnbd import BetaGeo, ModifiedBetaGeo
from crmkit.value.models.clv import customer_lifetime_value
from crmkit.value.models.gammagamma import GammaGamma
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
    "customer_lifetime_value",
    "datasets",
]
