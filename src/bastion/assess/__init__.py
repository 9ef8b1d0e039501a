"""Red-team assessment: how exposed a model is before it ships (``bastion assess``).

Three black-box threats are measured on a model and labelled evaluation data, each against
thresholds from the policy's ``[assess]`` table and reported through the shared
:class:`~bastion.findings.Finding` model:

- robustness (:mod:`.robustness`): FGSM and PGD where the framework gives gradients,
  HopSkipJump through queries only; robust accuracy over an epsilon sweep;
- privacy (:mod:`.privacy`): membership inference (loss and confidence thresholds, shadow
  models, label-only) as AUC and TPR at low FPR; attribute inference when a sensitive feature
  is named;
- extraction (:mod:`.extraction`): a copycat model trained on the victim's answers, fidelity
  against the number of queries.

The heavy libraries (NumPy, scikit-learn, ART, torch) are imported by those modules only;
importing this package, :mod:`.rules` or :mod:`.settings` costs nothing, so the rule
catalogue and policy validation can name the assessment's rules without loading them.
"""

from __future__ import annotations
