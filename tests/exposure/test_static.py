"""Static rules of the infra capability on real-looking configuration files.

Every rule is shown firing on a file in the style of its project's own examples (or a small
variant) and staying quiet on a hardened one; findings carry the line of the setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.exposure import rules
from bastion.findings import Severity

from .conftest import DATA, ids, of, one, scan, write

# -- TorchServe ---------------------------------------------------------------------------------


def test_torchserve_docker_image_config_exposes_management() -> None:
    """pytorch/serve's docker/config.properties binds every API to 0.0.0.0."""
    findings = scan(DATA / "torchserve/docker/config.properties").findings
    mgmt = one(findings, "INFRA-TORCHSERVE-MANAGEMENT-EXPOSED")
    assert mgmt.location.line == 2
    assert mgmt.severity is Severity.HIGH  # token auth not disabled here: 0.11+ protects it
    assert "0.0.0.0" in (mgmt.evidence or "")
    urls = one(findings, "INFRA-TORCHSERVE-ALLOWED-URLS")
    assert "not set" in urls.message
    assert one(findings, "INFRA-TORCHSERVE-METRICS-EXPOSED").location.line == 3
    # inference bound widely is normal while token auth is on
    assert "INFRA-TORCHSERVE-INFERENCE-OPEN" not in ids(findings)
    assert "CVE-2023-43654" in {r.id for r in mgmt.references}


def test_torchserve_kfserving_sample_installs_model_dependencies() -> None:
    findings = scan(DATA / "torchserve/kfserving/config.properties").findings
    assert one(findings, "INFRA-TORCHSERVE-INSTALL-DEPS").location.line == 8
    assert one(findings, "INFRA-TORCHSERVE-MANAGEMENT-EXPOSED").location.line == 3


def test_torchserve_llm_example_turns_security_off() -> None:
    findings = scan(DATA / "torchserve/llm/config.properties").findings
    assert one(findings, "INFRA-TORCHSERVE-TOKEN-AUTH-DISABLED").location.line == 6
    assert one(findings, "INFRA-TORCHSERVE-MODEL-API-ENABLED").location.line == 7
    assert one(findings, "INFRA-TORCHSERVE-CORS-ANY").location.line == 8
    inference = one(findings, "INFRA-TORCHSERVE-INFERENCE-OPEN")
    assert inference.location.line == 3
    urls = one(findings, "INFRA-TORCHSERVE-ALLOWED-URLS")  # continued line: one wide pattern
    assert urls.location.line == 10
    assert "http(s)?://.*" in (urls.evidence or "")
    # management stays on loopback
    assert "INFRA-TORCHSERVE-MANAGEMENT-EXPOSED" not in ids(findings)


def test_torchserve_hardened_config_is_quiet() -> None:
    assert scan(DATA / "torchserve/secure/config.properties").findings == ()


def test_torchserve_management_exposed_is_critical_without_token(tmp_path: Path) -> None:
    path = write(tmp_path, "config.properties",
                 "management_address=http://10.0.3.7:8081\ndisable_token_authorization=true\n"
                 "allowed_urls=https://models.example.com/.*\n")
    findings = scan(path).findings
    assert one(findings, "INFRA-TORCHSERVE-MANAGEMENT-EXPOSED").severity is Severity.CRITICAL
    assert "INFRA-TORCHSERVE-ALLOWED-URLS" not in ids(findings)  # narrow list


def test_a_java_properties_file_that_is_not_torchserve_is_not_claimed(tmp_path: Path) -> None:
    path = write(tmp_path, "config.properties",
                 "spring.datasource.url=jdbc:postgresql://0.0.0.0/db\nserver.port=8081\n")
    report = scan(path)
    assert report.findings == ()
    assert [s.reason for s in report.skipped] == ["no analyzer claims this content"]


def test_torchserve_settings_in_a_dockerfile_and_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", (
        "FROM pytorch/torchserve:0.12.0-cpu\n"
        "COPY model_store/dense121.mar /home/model-server/model-store/\n"
        "ENV TS_DISABLE_TOKEN_AUTHORIZATION=true\n"
        'CMD ["torchserve", "--start", "--ncs", "--model-store", "/home/model-server/model-store",'
        ' "--models", "dense121.mar", "--enable-model-api"]\n'))
    findings = scan(path).findings
    assert one(findings, "INFRA-TORCHSERVE-TOKEN-AUTH-DISABLED").location.line == 3
    assert one(findings, "INFRA-TORCHSERVE-MODEL-API-ENABLED").location.line == 4


def test_torchserve_management_port_on_a_load_balancer(tmp_path: Path) -> None:
    """pytorch/serve's Helm chart publishes the management port with a LoadBalancer."""
    path = write(tmp_path, "torchserve.yaml", """\
kind: Service
apiVersion: v1
metadata:
  name: torchserve
spec:
  ports:
  - name: preds
    port: 8080
    targetPort: ts
  - name: mdl
    port: 8081
    targetPort: ts-management
  type: LoadBalancer
  selector:
    app: torchserve
---
kind: Deployment
apiVersion: apps/v1
metadata:
  name: torchserve
spec:
  template:
    spec:
      containers:
      - name: torchserve
        image: pytorch/torchserve:latest
        args: ["torchserve", "--start", "--model-store", "/home/model-server/shared/model-store/"]
        securityContext:
          runAsNonRoot: true
""")
    found = one(scan(path).findings, "INFRA-TORCHSERVE-MANAGEMENT-EXPOSED")
    assert found.severity is Severity.CRITICAL
    assert found.location.line == 10
    internal = write(tmp_path / "internal", "torchserve.yaml",
                     path.read_text().replace("type: LoadBalancer", "type: ClusterIP"))
    assert "INFRA-TORCHSERVE-MANAGEMENT-EXPOSED" not in ids(scan(internal).findings)


# -- Triton -------------------------------------------------------------------------------------


def test_triton_deployment_with_explicit_model_control() -> None:
    findings = scan(DATA / "triton/deployment.yaml").findings
    control = one(findings, "INFRA-TRITON-MODEL-CONTROL-OPEN")
    assert control.location.line == 40  # the args list
    assert "HTTP and gRPC" in control.message
    assert one(findings, "INFRA-TRITON-TRACE-TENSORS").location.line == 40
    assert one(findings, "INFRA-TRITON-METRICS-EXPOSED")
    assert one(findings, "INFRA-TRITON-ADMIN-API-OPEN").severity is Severity.LOW
    writable = one(findings, "INFRA-SERVING-MODEL-STORE-WRITABLE")
    assert writable.location.line == 48
    root = one(findings, "INFRA-SERVING-RUNS-AS-ROOT")
    assert (root.location.line, root.severity) == (37, Severity.HIGH)
    assert one(findings, "INFRA-SERVING-PRIVILEGE-ESCALATION").location.line == 38


def test_triton_hardened_deployment_is_quiet() -> None:
    """Restricted APIs (HTTP and gRPC spellings), metrics off, read-only store, non-root:
    the command inside ``sh -c`` is read too."""
    assert scan(DATA / "triton/deployment-hardened.yaml").findings == ()


def test_triton_restriction_on_http_only_leaves_grpc_open(tmp_path: Path) -> None:
    path = write(tmp_path, "run-triton.sh", (
        "#!/bin/sh\nset -e\n"
        "tritonserver --model-repository=s3://bucket/models --model-control-mode explicit \\\n"
        "  --http-restricted-api=model-repository,logging,trace,shared-memory:k=v \\\n"
        "  --allow-metrics=false\n"))
    findings = scan(path).findings
    control = one(findings, "INFRA-TRITON-MODEL-CONTROL-OPEN")
    assert control.location.line == 3
    assert "open on gRPC:" in control.message
    assert "HTTP:" not in one(findings, "INFRA-TRITON-ADMIN-API-OPEN").message
    no_grpc = write(tmp_path / "b", "run-triton.sh",
                    path.read_text().replace("--allow-metrics=false",
                                             "--allow-metrics=false --allow-grpc=false"))
    assert scan(no_grpc).findings == ()


def test_triton_helm_template_is_read_through_its_placeholders() -> None:
    """A Helm template is not YAML; its expressions are blanked and the rest is read."""
    findings = scan(DATA / "triton/helm-deployment.yaml").findings
    assert one(findings, "INFRA-TRITON-MODEL-POLLING").location.line == 28
    assert "INFRA-CONFIG-UNCHECKED" not in ids(findings)
    assert "INFRA-TRITON-METRICS-EXPOSED" not in ids(findings)


def test_triton_compose_file_with_writable_repository() -> None:
    findings = scan(DATA / "triton/docker-compose.yml").findings
    assert one(findings, "INFRA-TRITON-MODEL-CONTROL-OPEN").location.line == 4
    writable = one(findings, "INFRA-SERVING-MODEL-STORE-WRITABLE")
    assert writable.location.line == 9
    assert writable.evidence == "./model_repository:/models"


def test_triton_compose_read_only_repository_is_not_flagged(tmp_path: Path) -> None:
    text = (DATA / "triton/docker-compose.yml").read_text().replace(
        "./model_repository:/models", "./model_repository:/models:ro")
    assert "INFRA-SERVING-MODEL-STORE-WRITABLE" not in ids(
        scan(write(tmp_path, "compose.yaml", text)).findings)


# -- Ray ----------------------------------------------------------------------------------------


def test_ray_cluster_launcher_binds_dashboard_everywhere() -> None:
    findings = scan(DATA / "ray/example-full.yaml").findings
    exposed = one(findings, "INFRA-RAY-DASHBOARD-EXPOSED")
    assert exposed.location.line == 65
    assert exposed.severity is Severity.CRITICAL
    assert "AML.CS0023" in {r.id for r in exposed.references}
    assert "https://atlas.mitre.org/studies/AML.CS0023" in {r.url for r in exposed.references}


def test_ray_launcher_with_token_auth_is_quiet(tmp_path: Path) -> None:
    text = (DATA / "ray/example-full.yaml").read_text().replace(
        "ulimit -n 65536; ray start --head",
        "export RAY_AUTH_MODE=token; ulimit -n 65536; ray start --head")
    assert scan(write(tmp_path, "cluster.yaml", text)).findings == ()


def test_kuberay_cluster_without_auth_and_a_node_port() -> None:
    findings = scan(DATA / "ray/raycluster.yaml").findings
    off = one(findings, "INFRA-RAY-TOKEN-AUTH-OFF")
    assert off.severity is Severity.MEDIUM
    assert off.location.line == 6  # the spec
    published = one(findings, "INFRA-RAY-DASHBOARD-EXPOSED")
    assert "NodePort" in published.message
    assert published.location.line == 52


def test_kuberay_cluster_with_auth_options_is_quiet_even_behind_a_load_balancer() -> None:
    findings = scan(DATA / "ray/ray-cluster.auth.yaml").findings
    assert not {f.rule_id for f in findings if f.rule_id.startswith("INFRA-RAY")}


def test_ray_compose_publishes_dashboard_and_disables_auth() -> None:
    findings = scan(DATA / "ray/docker-compose.yml").findings
    exposed = one(findings, "INFRA-RAY-DASHBOARD-EXPOSED")
    assert exposed.location.line == 8
    assert "8265:8265" in exposed.message
    assert "10001:10001" in exposed.message
    off = one(findings, "INFRA-RAY-TOKEN-AUTH-OFF")
    assert (off.location.line, off.severity) == (13, Severity.HIGH)


def test_docker_run_of_ray_on_loopback_ports_is_quiet(tmp_path: Path) -> None:
    path = write(tmp_path, "start-ray.sh", (
        "docker run -d --rm -p 127.0.0.1:8265:8265 -p 127.0.0.1:10001:10001 \\\n"
        "  rayproject/ray:2.52.0 ray start --head --dashboard-host=0.0.0.0 --block\n"))
    assert scan(path).findings == ()
    opened = write(tmp_path / "b", "start-ray.sh",
                   path.read_text().replace("127.0.0.1:10001:", "10001:"))
    assert one(scan(opened).findings, "INFRA-RAY-DASHBOARD-EXPOSED").location.line == 1


# -- MLflow -------------------------------------------------------------------------------------


def test_mlflow_basic_auth_ini_with_the_legacy_default_password() -> None:
    found = one(scan(DATA / "mlflow/basic_auth.ini").findings,
                "INFRA-MLFLOW-DEFAULT-ADMIN-PASSWORD")
    assert found.severity is Severity.CRITICAL
    assert found.location.line == 5
    assert "GHSA-gq3w-7jj3-x7gr" in {r.id for r in found.references}


def test_mlflow_basic_auth_ini_with_a_real_password_is_quiet(tmp_path: Path) -> None:
    text = (DATA / "mlflow/basic_auth.ini").read_text().replace("password1234", "x9!Ld0-aQ")
    assert scan(write(tmp_path, "basic_auth.ini", text)).findings == ()


def test_mlflow_compose_server_without_auth() -> None:
    findings = scan(DATA / "mlflow/docker-compose.yaml").findings
    no_auth = one(findings, "INFRA-MLFLOW-NO-AUTH")  # the basic-auth service is not flagged
    assert no_auth.location.line == 14
    assert one(findings, "INFRA-MLFLOW-SECURITY-MIDDLEWARE-OFF").location.line == 14
    password = one(findings, "INFRA-MLFLOW-DEFAULT-ADMIN-PASSWORD")
    assert password.location.line == 13


def test_mlflow_on_loopback_is_quiet(tmp_path: Path) -> None:
    path = write(tmp_path, "serve.sh", "exec mlflow server --host 127.0.0.1 --port 5000\n"
                 "mlflow ui\n")
    assert scan(path).findings == ()


# -- Jupyter ------------------------------------------------------------------------------------


def test_jupyter_notebook_config_without_authentication() -> None:
    findings = scan(DATA / "jupyter/jupyter_notebook_config.py").findings
    no_auth = one(findings, "INFRA-JUPYTER-NO-AUTH")
    assert (no_auth.location.line, no_auth.severity) == (15, Severity.CRITICAL)
    assert one(findings, "INFRA-JUPYTER-ANY-ORIGIN").location.line == 17
    assert one(findings, "INFRA-JUPYTER-BIND-ALL").location.line == 8


def test_jupyter_json_config_reads_each_section() -> None:
    findings = scan(DATA / "jupyter/jupyter_server_config.json").findings
    assert one(findings, "INFRA-JUPYTER-XSRF-DISABLED").location.line == 4
    assert one(findings, "INFRA-JUPYTER-ANY-ORIGIN").location.line == 5
    # the empty token comes with a hashed password: password login still protects it
    assert "INFRA-JUPYTER-NO-AUTH" not in ids(findings)
    assert "INFRA-JUPYTER-BIND-ALL" not in ids(findings)


def test_jupyter_config_is_parsed_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = write(tmp_path, "jupyter_server_config.py", (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "c.ServerApp.token = ''\n"
        "c.IdentityProvider.token = __import__('os').environ.get('TOKEN', '')\n"))
    findings = scan(path).findings
    assert not marker.exists()
    # the last assignment wins, and it is computed at run time: not flagged
    assert "INFRA-JUPYTER-NO-AUTH" not in ids(findings)
    literal = write(tmp_path / "b", "jupyter_server_config.py", "c.ServerApp.token = ''\n")
    found = one(scan(literal).findings, "INFRA-JUPYTER-NO-AUTH")
    assert found.severity is Severity.HIGH  # loopback by default


def test_jupyter_default_config_is_quiet(tmp_path: Path) -> None:
    path = write(tmp_path, "jupyter_server_config.py", (
        "c = get_config()\n"
        "c.ServerApp.ip = '127.0.0.1'\n"
        "c.ServerApp.open_browser = False\n"
        "c.PasswordIdentityProvider.hashed_password = 'argon2:$argon2id$...'\n"))
    assert scan(path).findings == ()


@pytest.mark.parametrize(("command", "expected"), [
    ("jupyter notebook --ip=0.0.0.0 --NotebookApp.token='' --NotebookApp.password=''",
     {"INFRA-JUPYTER-NO-AUTH", "INFRA-JUPYTER-BIND-ALL"}),
    ("jupyter lab --ServerApp.token= --ServerApp.allow_origin='*' --allow-root",
     {"INFRA-JUPYTER-NO-AUTH", "INFRA-JUPYTER-ANY-ORIGIN"}),
    ("start-notebook.py --IdentityProvider.token='' --ServerApp.disable_check_xsrf=True",
     {"INFRA-JUPYTER-NO-AUTH", "INFRA-JUPYTER-XSRF-DISABLED"}),
    ("python -m jupyter_server --ServerApp.ip 0.0.0.0", {"INFRA-JUPYTER-BIND-ALL"}),
    ("jupyter lab --no-browser --ServerApp.token=$JUPYTER_TOKEN", set()),
    ("jupyter nbconvert --to html --ServerApp.token= notebook.ipynb", set()),
])
def test_jupyter_command_lines(tmp_path: Path, command: str, expected: set[str]) -> None:
    path = write(tmp_path, "Dockerfile", f"FROM quay.io/jupyter/base-notebook\nCMD {command}\n")
    findings = scan(path).findings
    assert ids(findings) == expected
    assert all(f.location.line == 2 for f in findings)


# -- KServe + Istio -----------------------------------------------------------------------------


def test_istio_policies_for_an_inference_service_without_sidecar() -> None:
    """The InferenceService (injection off) and the policies are in different files."""
    report = scan(DATA / "kserve/unenforced")
    found = of(report.findings, "INFRA-KSERVE-AUTH-POLICY-NOT-ENFORCED")
    assert {(f.location.path.rsplit("/", 1)[-1], f.location.line) for f in found} == {
        ("auth.yaml", 1), ("auth.yaml", 14)}
    assert all("sidecar.istio.io/inject" in f.message for f in found)


def test_istio_policy_with_injection_enabled_is_quiet() -> None:
    findings = scan(DATA / "kserve/enforced").findings
    assert ids(findings) == set()


def test_namespace_without_injection_disables_enforcement(tmp_path: Path) -> None:
    text = (DATA / "kserve/enforced/all.yaml").read_text()
    text = text.replace("istio-injection: enabled", "istio-injection: disabled").replace(
        'sidecar.istio.io/inject: "true"', "serving.kserve.io/deploymentMode: Serverless")
    found = one(scan(write(tmp_path, "all.yaml", text)).findings,
                "INFRA-KSERVE-AUTH-POLICY-NOT-ENFORCED")
    assert "namespace user1 has istio-injection: disabled" in found.message
    elsewhere = write(tmp_path / "b", "all.yaml", text.replace(
        "  name: allow-serving-tests\n  namespace: user1", "  name: x\n  namespace: user2"))
    assert "INFRA-KSERVE-AUTH-POLICY-NOT-ENFORCED" not in ids(scan(elsewhere).findings)


# -- serving pods -------------------------------------------------------------------------------


def test_inference_service_predictor_security_context(tmp_path: Path) -> None:
    path = write(tmp_path, "isvc.yaml", """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: torchserve
spec:
  predictor:
    volumes:
      - name: model-store
        hostPath:
          path: /mnt/models
    model:
      modelFormat:
        name: pytorch
      storageUri: pvc://models/torchserve
      securityContext:
        privileged: true
      volumeMounts:
        - name: model-store
          mountPath: /mnt/models
""")
    findings = scan(path).findings
    assert one(findings, "INFRA-SERVING-PRIVILEGED").location.line == 16
    assert one(findings, "INFRA-SERVING-MODEL-STORE-WRITABLE").location.line == 18
    unset = one(findings, "INFRA-SERVING-RUNS-AS-ROOT")
    assert unset.severity is Severity.LOW


def test_non_serving_workloads_are_not_judged(tmp_path: Path) -> None:
    path = write(tmp_path, "postgres.yaml", """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: postgres
spec:
  template:
    spec:
      volumes:
        - name: data
          persistentVolumeClaim:
            claimName: model-metadata
      containers:
        - name: postgres
          image: postgres:16
          securityContext:
            runAsUser: 0
          volumeMounts:
            - name: data
              mountPath: /var/lib/postgresql/models
""")
    assert scan(path).findings == ()


def test_every_static_rule_is_exercised_here() -> None:
    """Each INFRA rule id appears in this module's tests (a new rule needs a test)."""
    source = Path(__file__).read_text(encoding="utf-8")
    source += (Path(__file__).parent / "test_hostile.py").read_text(encoding="utf-8")
    missing = [r.id for r in rules.STATIC_RULES if r.id not in source]
    assert missing == []


def test_config_files_written_by_scripts_are_checked_in_place(tmp_path: Path) -> None:
    """A setup script that writes TorchServe's config with a heredoc, and a Dockerfile that
    COPYs a heredoc into place: the embedded files are checked at their lines."""
    script = write(tmp_path, "setup_torchserve.sh", (
        "#!/bin/bash\n"
        "set -euo pipefail\n"
        'cat > "$MODEL_PATH/config.properties" <<EOL\n'
        "inference_address=http://0.0.0.0:8080\n"
        "management_address=http://0.0.0.0:8081\n"
        "model_store=$MODEL_PATH/model-store\n"
        "disable_token_authorization=true\n"
        "EOL\n"
        'torchserve --model-store "$MODEL_PATH/model-store" --ts-config '
        '"$MODEL_PATH/config.properties"\n'))
    findings = scan(script).findings
    assert one(findings, "INFRA-TORCHSERVE-TOKEN-AUTH-DISABLED").location.line == 7
    mgmt = one(findings, "INFRA-TORCHSERVE-MANAGEMENT-EXPOSED")
    assert (mgmt.location.line, mgmt.severity) == (5, Severity.CRITICAL)
    dockerfile = write(tmp_path, "Dockerfile", (
        "# syntax=docker/dockerfile:1\n"
        "FROM quay.io/jupyter/base-notebook\n"
        "COPY <<EOF /etc/jupyter/jupyter_server_config.py\n"
        "c.ServerApp.ip = '0.0.0.0'\n"
        "c.IdentityProvider.token = ''\n"
        "EOF\n"))
    found = one(scan(dockerfile).findings, "INFRA-JUPYTER-NO-AUTH")
    assert (found.location.line, found.severity) == (5, Severity.CRITICAL)
