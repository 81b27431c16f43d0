"""The shipped alerting rules and Grafana dashboard (monitoring/) against Debian's real
Prometheus scraping a real daemon: promtool checks and unit-tests the rules; the dead-letter
alert fires when a path goes dead and clears after `drop`; the daemon-down alert fires when the
daemon stops; every dashboard query is accepted by Prometheus and names metrics the daemon
exports.

The scraped test uses a copy of the rules whose `for:` is FOR_SECONDS and 1 s scrape and
evaluation intervals, so it takes seconds, not minutes; the shipped rules are unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nix_push_queue.nix.isolated import IsolatedNix
from tests.fixtures._processes import free_port
from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.prometheus import PrometheusServer

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
RULES = MONITORING / "nix-push-queue.rules.yml"
RULES_TEST = MONITORING / "nix-push-queue.rules.test.yml"
DASHBOARD = MONITORING / "nix-push-queue.dashboard.json"
FOR_SECONDS = 5.0
# Scrape (1 s) + evaluation (1 s) + a loaded machine's scheduling.
LAG_ALLOWED = 10.0

Factory = Callable[..., DaemonHarness]
PromFactory = Callable[..., PrometheusServer]


def promtool(*args: str, cwd: Path = MONITORING) -> str:
    proc = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def fast_rules(tmp_path: Path) -> Path:
    """The shipped rules with every `for:` cut to FOR_SECONDS."""
    doc = yaml.safe_load(RULES.read_text("utf-8"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["for"] = f"{FOR_SECONDS:g}s"
    out = tmp_path / "fast.rules.yml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False), "utf-8")
    return out


def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    assert "SUCCESS: 7 rules found" in promtool("check", "rules", str(RULES))
    assert "SUCCESS" in promtool("test", "rules", str(RULES_TEST))
    promtool("check", "rules", str(fast_rules(tmp_path)))


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The unit tests judge the rules: a rule with a wrong threshold fails them."""
    (tmp_path / RULES.name).write_text(
        RULES.read_text("utf-8").replace("> 3600", "> 7200"), "utf-8")
    (tmp_path / RULES_TEST.name).write_text(RULES_TEST.read_text("utf-8"), "utf-8")
    proc = subprocess.run(["promtool", "test", "rules", RULES_TEST.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "NixPushQueueOldestPendingTooOld" in proc.stdout + proc.stderr


def shipped_for(alert: str) -> str:
    doc = yaml.safe_load(RULES.read_text("utf-8"))
    for rule in doc["groups"][0]["rules"]:
        if rule.get("alert") == alert:
            return str(rule["for"])
    raise AssertionError(f"no rule {alert}")


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def alert_state(prom: PrometheusServer, name: str) -> str | None:
    found = prom.alerts(name)
    return found[0]["state"] if found else None


def exported_families(metrics_url: str) -> set[str]:
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    families = set()
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = match.groups()
        families.add(name)
        if kind == "histogram":
            families |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return families


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text("utf-8"))
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    return exprs


def grafana_substitute(expr: str) -> str:
    """What Grafana sends for the dashboard's variables set to All."""
    return (expr.replace("$__rate_interval", "15s").replace('"$instance"', '".*"')
            .replace('"$target"', '".*"'))


def check_dashboard(prom: PrometheusServer, metrics_url: str) -> None:
    families = exported_families(metrics_url) | {"up"}
    for expr in dashboard_exprs():
        names = set(re.findall(r"\b(npq_[a-z_]+|up)\s*\{", expr))
        assert names, expr
        assert names <= families, f"{expr}: {names - families} not exported"
        if expr.startswith("label_values("):
            continue
        prom.query(grafana_substitute(expr))  # raises on a query Prometheus refuses
    # The headline panels show data from a real scrape, not just a valid query.
    for expr in dashboard_exprs()[:6]:
        assert prom.query(grafana_substitute(expr)), expr


def test_dead_letter_alert_fires_and_clears_against_real_prometheus(
        npq_daemon_factory: Factory, prometheus_factory: PromFactory, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    d = npq_daemon_factory(hook=False, metrics={"listen": listen},
                           queue={"retry": {"initial_delay": 0.1, "max_delay": 0.2,
                                            "max_attempts": 2}})
    d.start()
    prom = prometheus_factory([listen], [fast_rules(tmp_path)])
    instance = {"job": "nix-push-queue", "instance": listen}

    good = d.build("good", uuid.uuid4().hex)
    d.cli("push", str(good))
    d.wait_drained(timeout=120)
    wait_until(lambda: prom.query('npq_queue_rows{state="done"} == 1'), "the upload scraped")
    wait_until(lambda: prom.query("sum(npq_paths_settled_total) > 0"), "counters scraped")
    time.sleep(FOR_SECONDS + 2)
    assert prom.alerts() == [], "a healthy daemon raises no alert"
    check_dashboard(prom, f"http://{listen}/metrics")

    # A store path Nix cannot serialise any more: `nix copy` fails for it every time.
    bad = d.build("bad", uuid.uuid4().hex)
    bad.unlink()
    os.mkfifo(bad)
    d.cli("push", str(bad))
    wait_until(lambda: d.rows().get(str(bad), ("", 0))[0] == "dead", "the dead letter", 120)
    dead_at = time.monotonic()
    wait_until(lambda: alert_state(prom, "NixPushQueueDeadLetters") == "pending", "pending", 60)
    pending_at = time.monotonic()
    wait_until(lambda: alert_state(prom, "NixPushQueueDeadLetters") == "firing", "firing",
               FOR_SECONDS + 60)
    fired_at = time.monotonic()
    alert = prom.alerts("NixPushQueueDeadLetters")[0]
    assert alert["labels"] == {"alertname": "NixPushQueueDeadLetters", "severity": "warning",
                               "target": "local", **instance}
    assert alert["annotations"]["summary"] == f"1 dead letter(s) for target local on {listen}"
    # `for:` holds the alert back that long after the row died (dead_at is when this poll
    # saw it, up to a poll interval after a scrape may have).
    assert FOR_SECONDS - 0.5 <= fired_at - dead_at <= FOR_SECONDS + LAG_ALLOWED

    assert "1 dead letter(s) or lost path(s) dropped" in d.cli("drop", "--target", "local").stdout
    dropped_at = time.monotonic()
    wait_until(lambda: alert_state(prom, "NixPushQueueDeadLetters") is None, "cleared", 60)
    cleared_at = time.monotonic()
    assert cleared_at - dropped_at <= LAG_ALLOWED

    d.stop()
    stopped_at = time.monotonic()
    wait_until(lambda: alert_state(prom, "NixPushQueueDown") == "firing", "daemon down",
               FOR_SECONDS + 60)
    down_at = time.monotonic()
    assert prom.alerts("NixPushQueueDown")[0]["labels"]["instance"] == listen
    assert FOR_SECONDS <= down_at - stopped_at <= FOR_SECONDS + LAG_ALLOWED
    print(f"\nfor: {FOR_SECONDS:g}s (shipped {shipped_for('NixPushQueueDeadLetters')}), "
          f"scrape/eval 1s; dead letter -> pending {pending_at - dead_at:.1f}s, "
          f"-> firing {fired_at - dead_at:.1f}s; drop -> cleared {cleared_at - dropped_at:.1f}s; "
          f"daemon stop -> NixPushQueueDown firing {down_at - stopped_at:.1f}s")


MODULE_SETTINGS = """{{
  targets = [ {{ name = "lan"; url = "file:///var/lib/nix-cache"; secret_key_file = null;
                public_key = null; ssh_key_file = null; credentials_file = null; }} ];
  {metrics}
}}"""


@pytest.mark.parametrize("flavor", ["nixos", "debian"])
@pytest.mark.parametrize("listen", ["127.0.0.1:9469", None])
def test_module_and_generator_switch_the_metrics_endpoint_on(
        nix: IsolatedNix, tmp_path: Path, flavor: str, listen: str | None) -> None:
    """`settings.metrics.listen` (NixOS) or `metrics.listen` (config file) reaches the daemon's
    config, and the unit then keeps the network the endpoint needs (file:// targets alone get
    PrivateNetwork=yes)."""
    metrics = f'metrics.listen = "{listen}";' if listen else ""
    expr = f"import {REPO}/nix/settings-json.nix {MODULE_SETTINGS.format(metrics=metrics)}"
    document = json.loads(nix.run(["nix-instantiate", "--eval", "--strict", "--json",
                                   "--expr", expr]).stdout)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(document), "utf-8")
    out = tmp_path / "out"
    npq = str(Path(sys.executable).parent / "nix-push-queue")
    for argv in (["validate", str(settings)],
                 ["generate", str(settings), "--flavor", flavor, "--out", str(out),
                  "--prefix", str(out), "--executable", npq]):
        proc = subprocess.run([npq, *argv], capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stderr
    config = json.loads(next(out.rglob("config.json")).read_text("utf-8"))
    assert config.get("metrics", {}).get("listen") == listen
    service = next(out.rglob("nix-push-queue.service")).read_text("utf-8")
    assert ("PrivateNetwork=yes" in service) == (listen is None), service
