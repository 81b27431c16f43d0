"""module.nix against what a NixOS system already defines: its own nix.settings entries, the
user's, existing accounts.

Two layers. The decisions are builtins-only files (nix/accounts.nix, nix/keep-defaults.nix),
evaluated here by real Nix on every run. How they meet NixOS (priorities, merged lists,
conflicting definitions) only the real module system can say: those tests evaluate
module.nix with the real nixpkgs lib and NixOS modules of ../shared/nixos-eval (beside the
checkout in CI; see its README for what is real there) and are skipped without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.config import load_document
from nix_push_queue.generate import GenerateOptions, generate
from nix_push_queue.nix.isolated import IsolatedNix

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KIT = REPO.parent / "shared" / "nixos-eval"
CACHE = "https://cache.nixos.org/"
CACHE_KEY = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
KEY = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
USER_KEY = "user.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
TARGET = '[ { name = "c"; url = "file:///srv/c"; } ]'


def nix_eval(nix: IsolatedNix, expr: str, **args: Path) -> Any:
    argv = ["nix-instantiate", "--eval", "--strict", "--json", "--readonly-mode"]
    for name, path in args.items():
        argv += ["--arg", name, str(path)]
    proc = nix.run([*argv, "--expr", expr], timeout=300)
    return json.loads(proc.stdout)


FILLED = """
  let
    schema = builtins.fromJSON (builtins.readFile {repo}/schema/config.schema.json);
    raw = import {repo}/nix/settings-json.nix ({doc});
    filled = import {repo}/nix/schema-defaults.nix schema raw;
  in
"""


def accounts(nix: IsolatedNix, service: str, queue: str = "{ }") -> Any:
    doc = f"{{ service = {service}; queue = {queue}; }}"
    return nix_eval(nix, FILLED.format(repo=REPO, doc=doc)
                    + f"import {REPO}/nix/accounts.nix {{ config = filled; }}")


@pytest.mark.parametrize(("service", "queue", "users", "groups", "external"), [
    ("{ }", "{ }", {}, [], None),
    ('{ user = "nix-push-queue"; }', "{ }",
     {"nix-push-queue": {"group": "nix-push-queue", "description": "nix-push-queue daemon"}},
     ["nix-push-queue"], None),
    ('{ user = "nix-push-queue"; group = "nixbld"; }', "{ }",
     {"nix-push-queue": {"group": "nixbld", "description": "nix-push-queue daemon"}},
     ["nixbld"], None),
    ('{ user = "alice"; }', "{ }", {}, [], "alice"),
    ('{ user = "alice"; group = "wheel"; }', '{ socket_group = "nixbld"; }', {},
     ["wheel", "nixbld"], "alice"),
    ('{ user = "root"; group = "root"; }', "{ }", {}, [], None),
], ids=["dynamic", "owned", "owned-other-group", "existing", "existing-groups", "root"])
def test_accounts_the_module_defines(nix: IsolatedNix, service: str, queue: str,
                                     users: dict[str, Any], groups: list[str],
                                     external: str | None) -> None:
    got = accounts(nix, service, queue)
    assert got == {"users": users, "groups": groups, "external": external}


def dropped(nix: IsolatedNix, substituters: str, name: str, values: list[str]) -> Any:
    doc = f"{{ targets = {TARGET}; substituters = {substituters}; }}"
    expr = FILLED.format(repo=REPO, doc=doc) + f"""
      import {REPO}/nix/keep-defaults.nix {{
        config = filled;
        settings = import {REPO}/nix/nix-settings.nix {{ config = filled; hook = "/hook"; }};
      }} "{name}" (builtins.fromJSON ''{json.dumps(values)}'')"""
    return nix_eval(nix, expr)


def test_keep_defaults_false_drops_only_nixos_defaults(nix: IsolatedNix) -> None:
    config = '{ keep_defaults = false; urls = [ "https://ours.example.org" ]; }'
    merged = ["https://ours.example.org", "https://user.example.org", CACHE]
    assert dropped(nix, config, "substituters", merged) == merged[:2]
    assert dropped(nix, "{ keep_defaults = false; }", "trusted-public-keys",
                   [USER_KEY, CACHE_KEY]) == [USER_KEY]


def test_keep_defaults_false_keeps_what_the_config_lists(nix: IsolatedNix) -> None:
    config = f'{{ keep_defaults = false; urls = [ "https://ours.example.org" "{CACHE}" ]; }}'
    assert dropped(nix, config, "substituters", ["https://ours.example.org", CACHE]) == \
        ["https://ours.example.org", CACHE]


def test_keep_defaults_true_changes_nothing(nix: IsolatedNix) -> None:
    assert dropped(nix, "{ }", "substituters", [CACHE]) == [CACHE]


# --- the real module system ------------------------------------------------------------------

real = pytest.mark.skipif(not (KIT / "harness" / "eval.nix").is_file(),
                          reason=f"{KIT} (the real nixpkgs lib and NixOS modules) is absent")

SYSTEM = """{ kit, repo, subset }:
let
  r = import (kit + "/harness/eval.nix") {
    inherit subset; main = repo; overlay = true;
    modules = [ (repo + "/module.nix") (MODULE) ];
  };
  s = r.c.nix.settings;
in {
  inherit (r) failedAssertions warnings;
  inherit (r.summary) users;
  substituters = s.substituters;
  keys = s.trusted-public-keys;
  extra = s.extra-substituters or null;
  groups = builtins.attrNames r.c.users.groups;
  execStartPre = r.c.systemd.services.nix-push-queue.serviceConfig.ExecStartPre or null;
  nobody = { inherit (r.c.users.users.nobody) group description isSystemUser; };
  pathUnit = if r.c.systemd.paths ? nix-push-queue
    then let u = r.utils.systemdUtils.lib.pathToUnit r.c.systemd.paths.nix-push-queue;
      in { inherit (u) wantedBy overrideStrategy text; }
    else null;
  packages = map (p: p.name) r.c.systemd.packages;
}"""


def system(nix: IsolatedNix, module: str) -> Any:
    got = nix_eval(nix, SYSTEM.replace("MODULE", module), kit=KIT, repo=REPO,
                   subset=KIT / "nixpkgs-subset")
    assert got["failedAssertions"] == []
    return got


def npq(settings: str, extra: str = "") -> str:
    # This test's isolated Nix has its own store directory, which the module checks against.
    return f"""{{ lib, ... }}: {{
      services.nix-push-queue = {{ enable = true; settings = {settings}; }};
      services.nix-push-queue.settings.nix.store_dir = builtins.storeDir;
      {extra}
    }}"""


@real
def test_keep_defaults_false_keeps_the_users_own_caches(nix: IsolatedNix) -> None:
    got = system(nix, npq(
        f'{{ targets = {TARGET}; substituters = {{ keep_defaults = false; '
        f'urls = [ "https://ours.example.org" ]; trusted_public_keys = [ "{KEY}" ]; }}; }}',
        f'nix.settings.substituters = [ "https://user.example.org" ]; '
        f'nix.settings.trusted-public-keys = [ "{USER_KEY}" ];'))
    assert sorted(got["substituters"]) == ["https://ours.example.org", "https://user.example.org"]
    assert sorted(got["keys"]) == sorted([KEY, USER_KEY])


@real
def test_keep_defaults_false_with_empty_lists_drops_cache_nixos_org(nix: IsolatedNix) -> None:
    got = system(nix, npq(f"{{ targets = {TARGET}; substituters.keep_defaults = false; }}"))
    assert got["substituters"] == []
    assert got["keys"] == []


@real
def test_keep_defaults_false_yields_to_the_users_mkforce(nix: IsolatedNix) -> None:
    got = system(nix, npq(
        f'{{ targets = {TARGET}; substituters = {{ keep_defaults = false; '
        f'urls = [ "https://ours.example.org" ]; }}; }}',
        'nix.settings.substituters = lib.mkForce [ "https://user.example.org" ];'))
    assert got["substituters"] == ["https://user.example.org"]


@real
def test_keep_defaults_true_and_disabled_leave_nixos_defaults(nix: IsolatedNix) -> None:
    kept = system(nix, npq('{ substituters.urls = [ "https://ours.example.org" ]; }',
                           'nix.settings.substituters = [ "https://user.example.org" ];'))
    assert kept["substituters"] == ["https://user.example.org", CACHE]
    assert kept["extra"] == ["https://ours.example.org"]
    off = system(nix, "{ services.nix-push-queue.settings.substituters.keep_defaults = false; }")
    assert off["substituters"] == [CACHE]
    assert off["keys"] == [CACHE_KEY]


@real
def test_service_user_naming_a_normal_user(nix: IsolatedNix) -> None:
    got = system(nix, npq(f'{{ targets = {TARGET}; service.user = "alice"; }}',
                          "users.users.alice.isNormalUser = true;"))
    assert got["users"]["alice"]["group"] == "users"
    assert got["users"]["alice"]["isNormalUser"]
    assert got["users"]["alice"]["description"] == ""
    assert "alice" not in got["groups"]
    assert got["warnings"] == []


@real
def test_service_user_nobody(nix: IsolatedNix) -> None:
    got = system(nix, npq(f'{{ targets = {TARGET}; service.user = "nobody"; }}'))
    assert got["nobody"]["group"] == "nogroup"
    assert got["nobody"]["description"] != "nix-push-queue daemon"
    assert got["warnings"] == []


@real
def test_service_user_no_module_defines_warns(nix: IsolatedNix) -> None:
    got = system(nix, npq(f'{{ targets = {TARGET}; service.user = "pusher"; }}'))
    assert "pusher" not in got["users"]
    assert len(got["warnings"]) == 1
    assert "users.users.pusher" in got["warnings"][0]


@real
def test_service_user_the_module_owns(nix: IsolatedNix) -> None:
    got = system(nix, npq(f'{{ targets = {TARGET}; service.user = "nix-push-queue"; }}'))
    user = got["users"]["nix-push-queue"]
    assert (user["isSystemUser"], user["group"]) == (True, "nix-push-queue")
    assert "nix-push-queue" in got["groups"]
    assert got["warnings"] == []


@real
def test_gc_roots_directory_before_every_start_and_its_group(nix: IsolatedNix) -> None:
    got = system(nix, npq(f"{{ targets = {TARGET}; }}"))
    assert "nix-push-queue-gcroots" in got["groups"]  # the DynamicUser's supplementary group
    assert "nix-push-queue" not in got["groups"]  # the DynamicUser's own name: systemd's
    # The packaged unit applies the tmpfiles rule; the module's drop-in adds no ExecStartPre.
    assert got["execStartPre"] is None
    out = "/nix/store/" + "0" * 32 + "-nix-push-queue-generated"
    doc = {"targets": [{"name": "a", "url": "file:///srv/cache"}]}
    unit = generate(load_document(doc), GenerateOptions(flavor="nixos", prefix=out))[
        "lib/systemd/system/nix-push-queue.service"]
    assert ("ExecStartPre=+/run/current-system/sw/bin/systemd-tmpfiles --create "
            f"{out}/lib/tmpfiles.d/nix-push-queue.conf") in unit.splitlines()
    off = system(nix, npq(f"{{ targets = {TARGET}; queue.gc_roots.enable = false; }}"))
    assert off["execStartPre"] is None and "nix-push-queue-gcroots" not in off["groups"]


@real
def test_a_build_starts_the_daemon_through_the_packaged_path_unit(nix: IsolatedNix) -> None:
    """The hook only spools: the generated nix-push-queue.path (from systemd.packages) is
    what starts a stopped daemon, so the module must put it in paths.target, as a drop-in
    over the packaged unit (no [Path] of its own that would replace the generator's)."""
    got = system(nix, npq(f"{{ targets = {TARGET}; }}"))
    assert got["pathUnit"] is not None
    assert got["pathUnit"]["wantedBy"] == ["paths.target"]
    assert got["pathUnit"]["overrideStrategy"] == "asDropinIfExists"
    assert "PathExistsGlob" not in got["pathUnit"]["text"]
    assert "nix-push-queue-generated" in got["packages"]
    consumer = system(nix, npq('{ substituters.urls = [ "https://c.example.org" ]; }'))
    assert consumer["pathUnit"] is None
