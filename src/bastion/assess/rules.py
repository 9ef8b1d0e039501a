"""The assessment's rules: one per measured exposure, plus what could not be measured.

References: OWASP Machine Learning Security Top 10 (ML01 input manipulation, ML03 model
inversion, ML04 membership inference, ML05 model theft) and MITRE ATLAS — AML.T0043 Craft
Adversarial Data (.000 white-box optimization, .001 black-box optimization) and AML.T0024
Exfiltration via AI Inference API (.000 infer training data membership, .001 invert AI model,
.002 extract AI model).
"""

from __future__ import annotations

from bastion.findings import Category, Severity
from bastion.rules import Rule

ROBUSTNESS_LOW = Rule(
    id="ASSESS-ROBUSTNESS-LOW",
    title="Small input perturbations change the model's answers",
    severity=Severity.HIGH,
    category=Category.ROBUSTNESS,
    description=(
        "Adversarial examples crafted within the policy's perturbation budget (a fraction of "
        "the input range, L-infinity) bring the model's accuracy below the policy's minimum. "
        "An attacker who can shape inputs (the stop sign read as a yield sign) decides the "
        "output: with gradients (white-box: FGSM, PGD) or with queries only (black-box: "
        "HopSkipJump)."
    ),
    remediation=(
        "Train adversarially (PGD adversarial training at the budget you must withstand), "
        "restrict and validate the input domain, and enable the gateway's adversarial-input "
        "detector (feature squeezing) for this model; re-run `bastion assess` to confirm."
    ),
    references=("ML01", "AML.T0043", "AML.T0043.000", "AML.T0043.001"),
)
MEMBERSHIP_LEAK = Rule(
    id="ASSESS-MEMBERSHIP-LEAK",
    title="The model reveals which records it was trained on",
    severity=Severity.HIGH,
    category=Category.PRIVACY,
    description=(
        "A membership-inference attack tells training records from unseen ones better than "
        "the policy allows (ROC AUC, or true-positive rate at a 1% false-positive rate). "
        "Whoever can query the model learns whether a person's record was in the training "
        "set — itself sensitive for medical or financial data — and the gap usually comes "
        "from overfitting."
    ),
    remediation=(
        "Regularise (weight decay, early stopping, smaller trees/ensembles), train with "
        "differential privacy (DP-SGD) for sensitive data, and serve labels only or rounded "
        "scores (the gateway's output hardening); re-run `bastion assess` to confirm."
    ),
    references=("ML04", "AML.T0024", "AML.T0024.000"),
)
ATTRIBUTE_LEAK = Rule(
    id="ASSESS-ATTRIBUTE-LEAK",
    title="The model's outputs reveal a sensitive attribute of its training records",
    severity=Severity.MEDIUM,
    category=Category.PRIVACY,
    description=(
        "An attribute-inference attack recovers the named sensitive feature of training "
        "records from the other features and the model's output more accurately than the "
        "same attack without the model (the baseline), by more than the policy allows: the "
        "model inverts to private attributes of the people in its training data."
    ),
    remediation=(
        "Drop or coarsen the sensitive feature if the task allows it, regularise or train "
        "with differential privacy, and serve labels only or rounded scores."
    ),
    references=("ML03", "AML.T0024", "AML.T0024.001"),
)
EXTRACTION_EASY = Rule(
    id="ASSESS-EXTRACTION-EASY",
    title="A copy of the model can be stolen with few queries",
    severity=Severity.MEDIUM,
    category=Category.ROBUSTNESS,
    description=(
        "A copycat model trained only on the victim's answers to a few queries agrees with "
        "the victim on held-out data at least as often as the policy's fidelity limit. Its "
        "owner gets the model's function without paying for it, and a white-box copy to "
        "craft transferable adversarial examples against the original."
    ),
    remediation=(
        "Bound queries per principal (gateway quotas), serve labels or rounded scores only, "
        "and enable the gateway's extraction monitor (PRADA) for this model."
    ),
    references=("ML05", "AML.T0024", "AML.T0024.002"),
)
NOT_ASSESSED = Rule(
    id="ASSESS-NOT-ASSESSED",
    title="An exposure could not be measured",
    severity=Severity.INFO,
    category=Category.COVERAGE,
    description=(
        "Part of the assessment did not run: the model gives no gradients (no white-box "
        "attack), no member data was given (no membership inference), or no sensitive "
        "feature was named (no attribute inference). The report does not vouch for it."
    ),
    remediation="Provide what the message names and re-run `bastion assess`.",
)
ATTACK_ERROR = Rule(
    id="ASSESS-ATTACK-ERROR",
    title="An attack failed while assessing the model",
    severity=Severity.MEDIUM,
    category=Category.COVERAGE,
    description=(
        "An attack stopped with an error (or ran out of its query budget) before producing "
        "a measurement. The exposure it measures is unknown, so the assessment fails closed."
    ),
    remediation="Check the model and data shapes; rerun with BASTION_DEBUG=1 for the error.",
)

RULES: tuple[Rule, ...] = (
    ROBUSTNESS_LOW,
    MEMBERSHIP_LEAK,
    ATTRIBUTE_LEAK,
    EXTRACTION_EASY,
    NOT_ASSESSED,
    ATTACK_ERROR,
)
