"""The Helm chart, rendered by the real `helm` and checked against Kubernetes 1.33's schemas.

Each values combination an operator may use is rendered; every object must validate in strict
mode (an unknown kind or apiVersion is a failure), and the platform's rules must hold: probes,
resources, hardened pods, spread over the zones, selectors that select, secrets by reference.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from mutualis_kernel.service import default_ports
from mutualis_kernel.tenants import TenantDirectory, load_tenants

from .conftest import CHART, ISSUER, NAMESPACE, HelmFailed, Render, run_helm, values_args

#: The services this distribution installs, and their default HTTP ports.
KNOWN_SERVICES = default_ports()

KUBERNETES_VERSION = "1.33"
#: Every route of the four apps, with who may call it: tests/security/test_route_matrix.py
#: enumerates them from each app's `app.routes` and fails on a route it does not list, so this
#: inventory cannot fall behind the code (imported under the name pytest gives that module).
ROUTE_MATRIX = importlib.import_module("security.test_route_matrix")
THREE_ZONES = (
    "values-production-3zones.yaml",
    "values-nats-3zones.yaml",
    "values-nats-auth.yaml",
)
DEV = ("values-dev-single-zone.yaml",)
EXTERNAL_NATS = ["nats.enabled=false", "externalNats.urls={nats://nats.example.org:4222}"]

#: name -> (values files, --set items, whether the render spans three zones)
MATRIX: dict[str, tuple[tuple[str, ...], list[str], bool]] = {
    "defaults": ((), [ISSUER], True),
    "production-3zones": (THREE_ZONES, [], True),
    "dev-single-zone": (DEV, [], False),
    "external-nats": ((), [ISSUER, *EXTERNAL_NATS], True),
    "external-nats-with-cidrs": (
        (),
        [ISSUER, *EXTERNAL_NATS, "externalNats.cidrs={10.20.0.0/16}"],
        True,
    ),
    "no-network-policy": ((), [ISSUER, "networkPolicy.enabled=false"], True),
    "no-ingress": ((), [ISSUER, "ingress.enabled=false"], True),
    "no-otel": ((), [ISSUER, "otel.enabled=false"], True),
    "no-autoscaling": ((), [ISSUER, "serviceDefaults.autoscaling.enabled=false"], True),
    "no-pdb": ((), [ISSUER, "serviceDefaults.podDisruptionBudget.enabled=false"], True),
    "pkcs11-and-nats-auth": (
        (),
        [
            ISSUER,
            "pkcs11.enabled=true",
            "natsAuth.credentials.enabled=true",
            "natsAuth.credentials.existingSecret=nats-creds",
            "natsAuth.tls.enabled=true",
            "natsAuth.tls.existingSecret=nats-ca",
        ],
        True,
    ),
    "nats-nkeys": (
        (),
        [
            ISSUER,
            "natsAuth.credentials.enabled=true",
            "natsAuth.credentials.existingSecret=nats-creds",
            "natsAuth.credentials.kind=nkey",
        ],
        True,
    ),
    **{
        f"without-{name}": ((), [ISSUER, f"services.{name}.enabled=false"], True)
        for name in KNOWN_SERVICES
    },
}


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def service_of(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/name"])


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def config_of(docs: list[dict[str, Any]], service: str) -> dict[str, str]:
    [config] = [c for c in objects(docs, "ConfigMap") if service_of(c) == service]
    return dict(config["data"])


@pytest.fixture(scope="module", params=list(MATRIX))
def case(request: pytest.FixtureRequest, render: Render) -> tuple[str, list[dict[str, Any]]]:
    files, sets, _ = MATRIX[request.param]
    return request.param, render(files, sets)


def expected_services(name: str) -> set[str]:
    return {s for s in KNOWN_SERVICES if name != f"without-{s}"}


# -- Helm's own checks -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["defaults", "production-3zones", "dev-single-zone", "external-nats"]
)
def test_helm_lint_strict_passes(helm: Path, chart: Path, name: str) -> None:
    files, sets, _ = MATRIX[name]
    out = run_helm(helm, "lint", "--strict", str(chart), *values_args(files, sets))
    assert "0 chart(s) failed" in out


# -- every rendering -------------------------------------------------------------------------
def test_every_object_validates_against_kubernetes_1_33_in_strict_mode(case: Any) -> None:
    _, docs = case
    assert docs
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{where}: unknown kind or apiVersion for {KUBERNETES_VERSION}: {error}")
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {error}")


def test_every_object_carries_the_recommended_labels(case: Any) -> None:
    _, docs = case
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        for key in ("name", "instance", "version", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{key}" in labels, (doc["kind"], doc["metadata"]["name"], key)


def test_each_enabled_service_gets_its_own_set_of_objects(case: Any) -> None:
    name, docs = case
    wanted = expected_services(name)
    for kind in ("Deployment", "Service", "ServiceAccount", "ConfigMap"):
        assert sorted(service_of(d) for d in objects(docs, kind)) == sorted(wanted), kind
    pdbs = [service_of(d) for d in objects(docs, "PodDisruptionBudget")]
    if name in ("no-pdb", "dev-single-zone"):
        assert pdbs == []
    else:
        assert sorted(pdbs) == sorted(wanted), "one PodDisruptionBudget per service"


def test_probes_resources_and_hardened_security_context(case: Any) -> None:
    name, docs = case
    for deployment in objects(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        for container in pod["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            assert security["runAsNonRoot"] is True
            # Only the Tilt dev values may write into the container (live update syncs files).
            assert security["readOnlyRootFilesystem"] is (name != "dev-single-zone")
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_grace_period_outlasts_the_nats_drain(case: Any) -> None:
    _, docs = case
    for deployment in objects(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        config = config_of(docs, service_of(deployment))
        pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = float(config["MUTUALIS_DRAIN_TIMEOUT_S"])
        assert pod["terminationGracePeriodSeconds"] > drain + pause


def test_selectors_select_the_pods_they_mean(case: Any) -> None:
    _, docs = case
    deployments = {service_of(d): d for d in objects(docs, "Deployment")}
    for name, deployment in deployments.items():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        for constraint in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]:
            assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        others = [d for n, d in deployments.items() if n != name]
        for other in others:
            other_labels = other["spec"]["template"]["metadata"]["labels"]
            selected = selector.items() <= other_labels.items()
            assert not selected, f"{name} selects {service_of(other)}"
    for service in objects(docs, "Service"):
        pod_labels = deployments[service_of(service)]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    for pdb in objects(docs, "PodDisruptionBudget"):
        pod_labels = deployments[service_of(pdb)]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for hpa in objects(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["name"] == deployments[service_of(hpa)]["metadata"]["name"]
    for policy in objects(docs, "NetworkPolicy"):
        if "default-deny" in policy["metadata"]["name"]:
            continue
        pod_labels = deployments[service_of(policy)]["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_every_service_spreads_over_the_zones(case: Any) -> None:
    name, docs = case
    three_zones = MATRIX[name][2]
    for deployment in objects(docs, "Deployment"):
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        [zone] = [c for c in spread if c["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zone["whenUnsatisfiable"] == "DoNotSchedule"
        assert zone["maxSkew"] == 1
    if three_zones:
        hpas = objects(docs, "HorizontalPodAutoscaler")
        for hpa in hpas:
            assert hpa["spec"]["minReplicas"] >= 3, "one instance per zone at least"
        for deployment in objects(docs, "Deployment"):
            replicas = deployment["spec"].get("replicas")
            assert replicas is None or replicas >= 3


def test_no_secret_value_is_ever_rendered(case: Any) -> None:
    _, docs = case
    assert objects(docs, "Secret") == []
    for deployment in objects(docs, "Deployment"):
        for container in containers(deployment):
            for variable in container.get("env", []):
                sensitive = any(
                    w in variable["name"] for w in ("SECRET", "PASSWORD", "PIN", "TOKEN")
                )
                if sensitive:
                    assert "value" not in variable, variable["name"]
                    assert "secretKeyRef" in variable["valueFrom"], variable["name"]
    for config in objects(docs, "ConfigMap"):
        for key in config["data"]:
            assert not any(w in key for w in ("SECRET", "PASSWORD", "_PIN", "_TOKEN")), key


def test_every_pod_knows_its_nats_zone_tenants_and_telemetry(case: Any) -> None:
    name, docs = case
    for deployment in objects(docs, "Deployment"):
        service = service_of(deployment)
        config = config_of(docs, service)
        assert config["MUTUALIS_HTTP_HOST"] == "0.0.0.0"
        assert int(config["MUTUALIS_HTTP_PORT"]) == KNOWN_SERVICES[service]
        assert json.loads(config["MUTUALIS_NATS_URLS"])
        env = {v["name"]: v for v in containers(deployment)[0]["env"]}
        zone = env["MUTUALIS_DATACENTER"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert zone == "metadata.labels['topology.kubernetes.io/zone']"
        directory = TenantDirectory.model_validate(yaml.safe_load(config["tenants.yaml"]))
        assert directory.slugs == load_tenants().slugs
        assert config["MUTUALIS_TENANTS_FILE"] == "/etc/mutualis/tenants/tenants.yaml"
        if name == "no-otel" or name == "dev-single-zone":
            assert config["OTEL_SDK_DISABLED"] == "true"
            continue
        assert config["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http")
        assert config["OTEL_SERVICE_NAME"] == service
        attributes = env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
        assert "service.version=" in attributes
        assert "cloud.availability_zone=$(MUTUALIS_DATACENTER)" in attributes
        names = list(env)
        assert names.index("MUTUALIS_DATACENTER") < names.index("OTEL_RESOURCE_ATTRIBUTES")


def test_network_policies_deny_by_default_and_allow_what_each_service_needs(case: Any) -> None:
    name, docs = case
    policies = objects(docs, "NetworkPolicy")
    if name in ("no-network-policy", "dev-single-zone"):
        assert policies == []
        return
    [deny] = [p for p in policies if p["metadata"]["name"].endswith("-default-deny")]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    for policy in policies:
        if policy is deny:
            continue
        egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert 53 in egress_ports, "DNS"
        assert 4222 in egress_ports, "NATS"
        if name != "no-otel":
            assert 4318 in egress_ports, "OTLP collector"
        ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert ingress_ports == {"http"}


def test_public_endpoints_are_served_over_tls(case: Any) -> None:
    name, docs = case
    ingresses = {service_of(i): i for i in objects(docs, "Ingress")}
    if name in ("no-ingress", "dev-single-zone"):
        assert ingresses == {}
        return
    if "identity" in expected_services(name):
        assert "identity" in ingresses, "identity's login page is public"
    for ingress in ingresses.values():
        hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
        tls_hosts = {h for entry in ingress["spec"]["tls"] for h in entry["hosts"]}
        assert hosts <= tls_hosts
        assert all(entry["secretName"] for entry in ingress["spec"]["tls"])


def ingress_reaches(ingress: dict[str, Any], path: str) -> bool:
    """Kubernetes' matching: Exact is the whole path; Prefix matches whole path elements."""
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            prefix = entry["path"].rstrip("/")
            if entry["pathType"] == "Exact" and path == entry["path"]:
                return True
            if entry["pathType"] == "Prefix" and (
                prefix == "" or path == prefix or path.startswith(prefix + "/")
            ):
                return True
    return False


def concrete(route: str) -> str:
    """'GET /v1/folders/{folder_id}' -> '/v1/folders/x'."""
    return re.sub(r"\{[^}]+\}", "x", route.split(" ", 1)[1])


def test_the_ingress_routes_the_public_endpoints_and_nothing_internal(case: Any) -> None:
    """Every route the services' apps declare (the route matrix of tests/security enumerates
    them from app.routes) is reachable through the ingress, except the kernel's own: metrics,
    probes and the API description pages stay inside the cluster."""
    _, docs = case
    kernel_routes, public, protected = (
        ROUTE_MATRIX.KERNEL_PUBLIC,
        ROUTE_MATRIX.PUBLIC,
        ROUTE_MATRIX.PROTECTED,
    )
    ingresses = {service_of(i): i for i in objects(docs, "Ingress")}
    for service, ingress in ingresses.items():
        internal = {concrete(route) for route in kernel_routes}
        assert internal >= {"/metrics", "/docs", "/openapi.json", "/healthz", "/readyz"}
        for path in sorted(internal):
            assert not ingress_reaches(ingress, path), f"{service}: {path} is public"
        own = [r for r in public[service] if r not in kernel_routes]
        routes = [*protected[service], *own]
        assert routes
        for route in routes:
            assert ingress_reaches(ingress, concrete(route)), f"{service}: {route} unreachable"


def test_prometheus_may_scrape_metrics_inside_the_cluster(render: Render) -> None:
    docs = render([], [ISSUER])
    for deployment in objects(docs, "Deployment"):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        port = int(annotations["prometheus.io/port"])
        assert port == KNOWN_SERVICES[service_of(deployment)]
    for policy in objects(docs, "NetworkPolicy"):
        if policy["metadata"]["name"].endswith("-default-deny"):
            continue
        sources = [
            peer["namespaceSelector"]["matchLabels"]
            for rule in policy["spec"]["ingress"]
            for peer in rule["from"]
            if "namespaceSelector" in peer
        ]
        assert {"kubernetes.io/metadata.name": "monitoring"} in sources


# -- particular values -----------------------------------------------------------------------
def test_the_services_fetch_the_issuer_keys_where_the_operator_says(render: Render) -> None:
    # Tokens name the public issuer; the keys may come from identity's in-cluster Service.
    inside = "http://mutualis-identity:8001/jwks"
    default = render((), [ISSUER])
    internal = render((), [ISSUER, f"platform.jwksUrl={inside}"])
    for service in KNOWN_SERVICES:
        assert "MUTUALIS_JWKS_URL" not in config_of(default, service)
        assert config_of(internal, service)["MUTUALIS_JWKS_URL"] == inside
        assert config_of(internal, service)["MUTUALIS_ISSUER_URL"] == ISSUER.split("=", 1)[1]


def test_adding_a_commune_is_a_values_change(render: Render, tmp_path: Path) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    tenants = values["tenants"]
    tenants["version"] += 1
    tenants["list"].append(
        {
            "slug": "saint-medard-en-jalles",
            "insee": "33449",
            "name": "Saint-Médard-en-Jalles",
            "kind": "commune",
        }
    )
    extra = tmp_path / "tenants.yaml"
    extra.write_text(yaml.safe_dump({"tenants": tenants}, allow_unicode=True))
    docs = render([str(extra)], [ISSUER])
    for service in KNOWN_SERVICES:
        directory = TenantDirectory.model_validate(
            yaml.safe_load(config_of(docs, service)["tenants.yaml"])
        )
        assert "saint-medard-en-jalles" in directory
        assert directory.version == tenants["version"]


def test_the_pkcs11_module_is_mounted_into_the_services_that_sign(render: Render) -> None:
    docs = render([], [ISSUER, "pkcs11.enabled=true"])
    for deployment in objects(docs, "Deployment"):
        service = service_of(deployment)
        mounts = {m["name"] for m in containers(deployment)[0]["volumeMounts"]}
        config = config_of(docs, service)
        signs = service == "parapheur"
        assert ("pkcs11" in mounts) is signs
        assert ("MUTUALIS_PKCS11_MODULE" in config) is signs


def test_external_nats_urls_reach_every_service(render: Render) -> None:
    urls = ["nats://nats-a.example.org:4222", "nats://nats-b.example.org:4222"]
    docs = render([], [ISSUER, "nats.enabled=false", f"externalNats.urls={{{','.join(urls)}}}"])
    for service in KNOWN_SERVICES:
        assert json.loads(config_of(docs, service)["MUTUALIS_NATS_URLS"]) == urls


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ([], "platform.issuerUrl is required"),
        ([ISSUER, "nats.enabled=false"], "externalNats.urls is required when nats.enabled=false"),
        ([ISSUER, "secrets.smtp.existingSecret="], "secrets.smtp.existingSecret is required"),
        (
            [ISSUER, "natsAuth.credentials.enabled=true"],
            "natsAuth.credentials.existingSecret is required",
        ),
        (
            [ISSUER, "serviceDefaults.terminationGracePeriodSeconds=12"],
            "must exceed platform.drainTimeoutSeconds + preStopSleepSeconds",
        ),
        ([ISSUER, "platform.logFormat=xml"], "/platform/logFormat"),
        ([ISSUER, "services.identity.securityContext.runAsNonRoot=false"], "runAsNonRoot"),
        ([ISSUER, "tenants.list[0].slug=Not A Slug"], "/tenants/list/0/slug"),
        (
            [ISSUER, "services.parapheur.ingress.paths[0].path=/"],
            '"/" would publish /metrics',
        ),
        (
            [ISSUER, "services.identity.ingress.paths[0].path=/docs/oauth2-redirect"],
            "would publish /docs",
        ),
        ([ISSUER, "services.archive.ingress.paths=null"], "services.archive.ingress.paths is"),
    ],
    ids=[
        "no-issuer",
        "no-nats-at-all",
        "smtp-secret-unnamed",
        "nats-credentials-unnamed",
        "grace-shorter-than-drain",
        "unknown-log-format",
        "root-container",
        "bad-tenant-slug",
        "ingress-path-root",
        "ingress-path-docs",
        "ingress-without-paths",
    ],
)
def test_a_missing_or_wrong_value_fails_with_a_clear_message(
    helm: Path, chart: Path, sets: list[str], message: str
) -> None:
    with pytest.raises(HelmFailed) as failure:
        run_helm(
            helm,
            "template",
            "mutualis",
            str(chart),
            "--namespace",
            NAMESPACE,
            *values_args([], sets),
        )
    assert message in failure.value.stderr


def test_the_install_notes_tell_the_operator_what_to_check_next(helm: Path, chart: Path) -> None:
    out = run_helm(
        helm,
        "install",
        "mutualis",
        str(chart),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        *values_args(THREE_ZONES, ["services.notifications.enabled=false"]),
    )
    notes = out[out.index("NOTES:") :]
    assert "mutualis k8s status --namespace mutualis --release mutualis" in notes
    for secret in (
        "mutualis-identity-keys",
        "mutualis-signing-pins",
        "mutualis-smtp",
        "mutualis-nats-credentials",
        "mutualis-nats-ca",
        "mutualis-nats-server-tls",
        "mutualis-nats-users",
        "mutualis-nats-operator",
        "mutualis-tls",
    ):
        assert secret in notes, secret
    assert "https://login.mutualis.example (/.well-known/openid-configuration, /jwks" in notes
    assert "notifications.mutualis.example" not in notes, "a disabled service has no endpoint"
    assert "docs/deploy.md" in notes


def test_a_ca_bundle_can_be_mounted_into_one_service(render: Render, tmp_path: Path) -> None:
    extra = tmp_path / "tsa.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "archive": {
                        "extraVolumes": [{"name": "tsa-ca", "configMap": {"name": "tsa-ca"}}],
                        "extraVolumeMounts": [
                            {"name": "tsa-ca", "mountPath": "/etc/mutualis/tsa", "readOnly": True}
                        ],
                        "extraEnv": {"MUTUALIS_TSA_CA_FILE": "/etc/mutualis/tsa/ca.pem"},
                    }
                }
            }
        )
    )
    docs = render([str(extra)], [ISSUER])
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    [archive] = [d for d in objects(docs, "Deployment") if service_of(d) == "archive"]
    assert "tsa-ca" in {v["name"] for v in archive["spec"]["template"]["spec"]["volumes"]}
    config = config_of(docs, "archive")
    assert config["MUTUALIS_TSA_CA_FILE"] == "/etc/mutualis/tsa/ca.pem"
    assert config["MUTUALIS_WORK_DIR"] == "/tmp/archive", "the chart's own extraEnv is kept"


@pytest.mark.parametrize(
    ("name", "extension", "variable"),
    [
        ("pkcs11-and-nats-auth", "creds", "MUTUALIS_NATS_CREDENTIALS_FILE"),
        ("nats-nkeys", "nk", "MUTUALIS_NATS_NKEY_SEED_FILE"),
    ],
)
def test_each_service_mounts_only_its_own_nats_identity(
    render: Render, name: str, extension: str, variable: str
) -> None:
    files, sets, _ = MATRIX[name]
    docs = render(files, sets)
    for deployment in objects(docs, "Deployment"):
        service = service_of(deployment)
        if service not in KNOWN_SERVICES:
            continue
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        [credentials] = [v for v in volumes if v["name"] == "nats-credentials"]
        own = f"{service}.{extension}"
        assert credentials["secret"]["items"] == [{"key": own, "path": own}]
        assert config_of(docs, service)[variable] == f"/etc/mutualis/nats-credentials/{own}"
