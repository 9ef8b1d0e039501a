"""``bastion assess --endpoint`` against a real ``bastion serve`` on 127.0.0.1, detectors on.

The served model is a small CNN trained here on half of scikit-learn's digits (TorchScript,
admitted through the real registry and its scan), served under two names that differ only in
which detector blocks: ``digits`` blocks extraction (PRADA and query volume) and alerts on
adversarial inputs; ``digits-fs`` blocks adversarial inputs (feature squeezing, its threshold
calibrated on the model's training images at 5% false alarms) and alerts on extraction.
A blocked input refuses its whole request, so false alarms of feature squeezing in block mode
would stop any batch client — the copycat included — long before extraction is the reason;
each test uses the name whose blocking detector it is about, and reads the other detector's
alerts from the audit log. Every query goes over HTTP through the gateway, as an outside
attacker's would:

(a) the assessment's own copycat attack is blocked before it reaches its query budget, and so
    is the full ``bastion assess --endpoint`` run; an admin's reset lets the principal back in;
(b) PGD examples crafted white-box offline on the same model file are refused as adversarial
    at a measured rate, clean inputs at a measured false-alarm rate;
(c) a benign principal sending a few hundred ordinary inputs is never flagged for extraction.

The figures are printed (``-s`` shows them) as ``MEASURED ...`` lines; they are what the
README reports.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.conftest import run_cli
from tests.gateway.live import Gateway, start

from bastion.assess.data import EvalData, demo_data
from bastion.assess.endpoint import EndpointClient, endpoint_target
from bastion.assess.extraction import assess_extraction
from bastion.assess.settings import AssessSettings
from bastion.gateway import access, keys, registry
from bastion.gateway.tables import open_db

pytestmark = [pytest.mark.slow, pytest.mark.torch]

SCHEMA = {"shape": [None, 1, 8, 8], "dtype": "float32", "min": 0, "max": 1, "max_batch": 64}
#: The copycat's query budget, and the volume the monitor allows a principal per minute.
BUDGET = 2000
VOLUME_FLOOR = 1000
SQUEEZE_BITS = 2
FALSE_ALARMS = 0.05  # the calibration target, on the training images
EPSILONS = (0.05, 0.1, 0.2)
PRINCIPALS = {"thief": "digits", "redteam": "digits", "benign": "digits",
              "clean": "digits-fs", **{f"adv-{eps}": "digits-fs" for eps in EPSILONS}}


@dataclass
class Served:
    gateway: Gateway
    folder: Path
    model: Path
    data: EvalData
    tokens: dict[str, str]
    threshold: float
    http: httpx.Client

    def predict(self, who: str, inputs: np.ndarray) -> httpx.Response:
        model = PRINCIPALS[who]
        return self.http.post(f"/v1/models/{model}/predict",
                              content=json.dumps({"inputs": inputs.tolist()}),
                              headers={"Authorization": f"Bearer {self.tokens[who]}",
                                       "Content-Type": "application/json"})

    def admin(self, method: str, path: str) -> httpx.Response:
        return self.http.request(method, path,
                                 headers={"Authorization": f"Bearer {self.tokens['admin']}"})


def _code(response: httpx.Response) -> str:
    if response.status_code == 200:
        return "ok"
    return str(response.json()["error"]["code"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    torch = pytest.importorskip("torch")
    from bastion.assess.demo import train_cnn
    from bastion.gateway.config import DetectorSettings
    from bastion.gateway.detectors import calibrate
    from bastion.gateway.loaders import load_predictor
    from bastion.gateway.schema import InputSchema

    folder = tmp_path_factory.mktemp("live-assess")
    data = demo_data("digits", 0)
    members = data.members
    assert members is not None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module = train_cnn(members.x, members.y, 0, epochs=15)
    finally:
        torch.set_num_threads(threads)
    model = folder / "digits.pt"
    torch.jit.trace(module, torch.zeros(1, 1, 8, 8)).save(str(model))
    # The defender calibrates on the model's own training images; the false-alarm rate is
    # then measured on images the model never saw.
    predictor = load_predictor("torchscript", model, input_schema=InputSchema(**SCHEMA))
    threshold = calibrate(predictor.predict, members.x,
                          DetectorSettings(adversarial="block", squeeze_bits=SQUEEZE_BITS),
                          InputSchema(**SCHEMA), false_alarms=FALSE_ALARMS)

    url = f"sqlite:///{folder / 'gateway.db'}"
    engine = open_db(url)
    for name in ("digits", "digits-fs", "digits-open"):
        registry.admit(engine, name, model, loader="torchscript", input_schema=SCHEMA)
    tokens: dict[str, str] = {}
    grants = {**{who: [(m, "predict")] for who, m in PRINCIPALS.items()},
              "scorer": [("digits-open", "scores")], "admin": [("*", "admin")]}
    for who, pairs in grants.items():
        tokens[who] = keys.create_key(engine, who).secret
        for name, permission in pairs:
            access.grant(engine, f"user:{who}", name, permission, separation_of_duties=True)
    engine.dispose()
    policy = folder / "bastion.toml"
    policy.write_text(f"""
[gateway]
refresh-seconds = 0.5

[gateway.quota]
rate = 100000.0
burst = 100000
per-day = 10000000

[gateway.detectors."*"]
delta = 0.9
volume-window = 60
volume-floor = {VOLUME_FLOOR}
squeeze-bits = {SQUEEZE_BITS}
threshold = {threshold!r}

[gateway.detectors.digits]
extraction = "block"
adversarial = "alert"

[gateway.detectors.digits-fs]
extraction = "alert"
adversarial = "block"
""", encoding="utf-8")
    gateway = start(["--db", url, "--policy", str(policy)], log=folder / "gateway.log",
                    cwd=folder)
    http = gateway.client()
    try:
        yield Served(gateway, folder, model, data, tokens, threshold, http)
    finally:
        http.close()
        gateway.close()
    output = gateway.output()
    assert "Traceback" not in output, output[-5000:]


def _metric(served: Served, detector: str, action: str, model: str = "digits") -> float:
    text = served.admin("GET", "/metrics").text
    pattern = (rf'bastion_gateway_detections_total\{{action="{action}",detector="{detector}",'
               rf'model="{model}"\}} ([0-9.e+]+)')
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def _audit(served: Served, principal: str) -> list[dict[str, Any]]:
    from bastion.gateway import audit

    engine = open_db(f"sqlite:///{served.folder / 'gateway.db'}")
    try:
        import io

        stream = io.StringIO()
        audit.export_jsonl(engine, stream)
    finally:
        engine.dispose()
    entries = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    return [e for e in entries if e["principal"] == principal]


# -- (a) extraction --------------------------------------------------------------------------------


def test_copycat_is_blocked_before_its_budget(served: Served) -> None:
    target, data = endpoint_target(served.gateway.url, served.tokens["thief"], "digits",
                                   served.data.holdout)
    assert target.labels_only  # predict: the gateway answers labels only
    result = assess_extraction(target, data, AssessSettings(max_queries=BUDGET, seed=0))
    refusal = target.refusals.get("blocked_extraction")
    assert refusal is not None, result
    client: EndpointClient = target.client
    # answered = the probe + the copycat's measurement of the victim (its test half) + the
    # copycat's own queries before the block
    n = len(data.holdout.x)
    measured = n - round(n * 0.5) + 1
    copycat_queries = refusal.answered - measured
    assert refusal.answered == client.answered
    assert copycat_queries < BUDGET
    assert result.errors
    assert "blocked_extraction" in result.errors[0]
    print(f"\nMEASURED copycat blocked after {refusal.answered} answered queries "
          f"({copycat_queries} of the copycat's own budget of {BUDGET}, after "
          f"{measured} measurement queries); fidelity reached before the block: "
          f"{[(p.queries, round(p.fidelity, 3)) for p in result.points]}; reason: "
          f"{refusal.message}")
    # the principal stays blocked: no model call, a 403 each time
    again = served.predict("thief", data.holdout.x[:1])
    assert _code(again) == "blocked_extraction"
    assert "flagged earlier" in again.json()["error"]["message"]
    entries = _audit(served, "thief")
    blocked = [e for e in entries if e["reason"] == "blocked_extraction"]
    assert blocked
    assert all(e["status"] == 403 and e["decision"] == "deny" for e in blocked)
    assert _metric(served, "extraction", "block") >= 2
    alerts = [e for e in entries if e["reason"] == "alert:adversarial"]
    assert all(e["status"] == 200 and "alert:adversarial" in e["output_summary"]
               for e in alerts)
    answered = [e for e in entries if e["status"] == 200]
    assert _metric(served, "adversarial", "alert") >= len(alerts)
    print(f"MEASURED (alert mode) feature squeezing flagged {len(alerts)} of the copycat's "
          f"{len(answered)} answered requests (batches of up to 64)")
    # only an admin clears the flag
    forbidden = served.http.post("/v1/models/digits/detectors/reset",
                                 params={"principal": "thief"},
                                 headers={"Authorization": f"Bearer {served.tokens['thief']}"})
    assert _code(forbidden) == "forbidden"
    reset = served.admin("POST", "/v1/models/digits/detectors/reset?principal=thief")
    assert reset.status_code == 200, reset.text
    assert reset.json() == {"model": "digits", "principal": "thief", "cleared": True}
    assert _code(served.predict("thief", data.holdout.x[:1])) == "ok"
    assert served.admin("POST", "/v1/models/digits/detectors/reset?principal=thief"
                        ).json()["cleared"] is False


def test_the_whole_assessment_through_the_gateway(served: Served) -> None:
    """``bastion assess --endpoint``: the report says what it spent and where it was stopped.
    On the unwatched copy of the model (scores permission) it runs to the end."""
    holdout = served.data.holdout
    sample = served.folder / "eval.npz"
    np.savez(sample, x=holdout.x[:300], y=holdout.y[:300])
    common = ["assess", "--endpoint", served.gateway.url, "--data", sample, "--format", "json",
              "--samples", "50", "--max-queries", "200", "--epsilons", "0.1", "--quiet"]
    watched = run_cli(*common, "--model", "digits", "--api-key", served.tokens["redteam"],
                      cwd=served.folder, timeout=120)
    watched.assert_clean()
    assert watched.returncode in (0, 1), watched.output
    report = watched.json()["assessment"]
    endpoint = report["endpoint"]
    refusals = {r["code"]: r for r in endpoint["refusals"]}
    assert "blocked_extraction" in refusals, endpoint
    after = refusals["blocked_extraction"]["after_answered"]
    assert after == endpoint["answered"] < report["queries"]
    summary = " ".join(report["summary"])
    assert f"blocked the assessment as a model-extraction attempt after {after:,}" in summary
    print(f"\nMEASURED bastion assess --endpoint (labels only) blocked after {after} answered "
          f"queries ({refusals['blocked_extraction']['message']}); errors: "
          f"{[e[:80] for e in report['errors']]}")

    free = run_cli(*common, "--model", "digits-open", "--api-key", served.tokens["scorer"],
                   "--budget", "20000", cwd=served.folder, timeout=120)
    free.assert_clean()
    assert free.returncode in (0, 1), free.output
    report = free.json()["assessment"]
    assert report["endpoint"]["refusals"] == []
    assert report["extraction"]["points"][-1]["queries"] == 200
    assert report["robustness"]["blackbox_samples"] > 0
    assert report["endpoint"]["answered"] == report["queries"] + 1  # + the probe
    print(f"MEASURED bastion assess --endpoint (scores, no detectors): "
          f"{report['endpoint']['answered']} queries answered, none refused")


# -- (b) adversarial inputs ------------------------------------------------------------------------


def test_pgd_examples_are_flagged_by_feature_squeezing(served: Served) -> None:
    from bastion.assess.robustness import torch_pgd
    from bastion.assess.targets import TorchTarget, load_target

    holdout = served.data.holdout
    # white-box, offline, on the same model file (scanned and loaded by assess)
    target = load_target(served.model, served.data)
    assert isinstance(target, TorchTarget)
    x, y = holdout.x[:300], holdout.y[:300]
    clean_pred = target.predict(x)
    right = clean_pred == y
    clean = Counter(_code(served.predict("clean", x[i:i + 1])) for i in range(len(x)))
    assert set(clean) <= {"ok", "blocked_adversarial"}, clean
    false_alarms = clean["blocked_adversarial"] / len(x)
    rates = {}
    for eps in EPSILONS:
        adv = torch_pgd(target, x, y, eps, 2.5 * eps / 20, 20)
        fooled = right & (target.predict(adv) != y)
        sent = adv[fooled]
        answers = Counter(_code(served.predict(f"adv-{eps}", sent[i:i + 1]))
                          for i in range(len(sent)))
        assert set(answers) <= {"ok", "blocked_adversarial"}, answers
        rates[eps] = (answers["blocked_adversarial"] / max(1, len(sent)), len(sent))
        print(f"\nMEASURED PGD-20 eps={eps}: {int(fooled.sum())} of {int(right.sum())} "
              f"correctly classified inputs fooled; feature squeezing (bits={SQUEEZE_BITS}, "
              f"threshold {served.threshold:.3f}) refused {answers['blocked_adversarial']} "
              f"of {len(sent)} = {rates[eps][0]:.1%}")
    print(f"MEASURED clean held-out inputs refused as adversarial: "
          f"{clean['blocked_adversarial']} of {len(x)} = {false_alarms:.1%}")
    detection, count = rates[0.1]
    assert count >= 50
    assert detection >= false_alarms + 0.3, (rates, false_alarms)
    assert _metric(served, "adversarial", "block", "digits-fs") >= \
        clean["blocked_adversarial"] + 1
    refused = [e for e in _audit(served, "adv-0.1") if e["reason"] == "blocked_adversarial"]
    assert refused
    assert all(e["status"] == 403 and "feature squeezing" in e["output_summary"]
               for e in refused)
    # the extraction monitor (alert mode here) took none of these principals for a thief
    for who in ("clean", *(f"adv-{eps}" for eps in EPSILONS)):
        assert not [e for e in _audit(served, who) if "extraction" in e["output_summary"]], who


# -- (c) a benign principal ------------------------------------------------------------------------


def test_a_benign_principal_is_not_flagged(served: Served) -> None:
    holdout = served.data.holdout
    order = np.random.default_rng(7).permutation(len(holdout.x))[:400]
    answers = Counter(_code(served.predict("benign", holdout.x[order[i:i + 10]]))
                      for i in range(0, len(order), 10))
    assert answers == {"ok": 40}, answers
    entries = _audit(served, "benign")
    assert len(entries) == 40
    assert not [e for e in entries if "extraction" in e["reason"]
                or "extraction" in e["output_summary"]]
    alerts = sum(e["reason"] == "alert:adversarial" for e in entries)
    print(f"\nMEASURED benign principal, 400 held-out inputs in 40 requests: no extraction "
          f"flag; {alerts} requests of 10 carried an adversarial alert (alert mode)")
