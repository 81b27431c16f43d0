"""The steps of the Nix manual's post-build-hook test, each on its own.

Build a fresh derivation (unique content, no nixpkgs), wait until the queue has pushed it to
a target, check the signature with Nix as the judge, delete the path locally, substitute it
back with signatures required, and compare the content. A failing step raises
VerifyFailed(step, reason); `Procedure` runs them in order and reports progress.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..config.model import Target
from ..daemon.nixerrors import summarize
from ..errors import VerifyFailed
from ..nix.isolated import text_derivation
from .nixcalls import Context, VerifyNix, read_url, trust

# Seconds `delete` waits for the queue to release its GC root once the cache has the path.
ROOT_RELEASE_WAIT = 5.0


@dataclass(frozen=True)
class Built:
    path: str
    content: str
    nar_hash: str


class Steps:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.nix = VerifyNix(ctx)

    def build(self) -> Built:
        nonce = secrets.token_hex(16)
        content = f"nix-push-queue verify {nonce}\n"
        expr = text_derivation(f"npq-verify-{nonce[:8]}", content)
        out = self.nix.run("build", [self.nix.program("nix-build"), "--no-out-link", "-E", expr])
        path = out.stdout.strip().splitlines()[-1]
        built = Built(path, content, self._nar_hash("build", path))
        if self.ctx.enqueue is not None:
            self.ctx.enqueue([path])
        return built

    def wait_pushed(self, target: Target, built: Built) -> None:
        deadline = time.monotonic() + self.ctx.timeout
        while self.nix.path_info("push", target, built.path) is None:
            if time.monotonic() > deadline:
                view = self.ctx.diagnose(target.name) if self.ctx.diagnose else ""
                raise VerifyFailed("push", f"{built.path} is not in {target.name} after "
                                   f"{self.ctx.timeout:g} s" + (f"; daemon: {view}" if view
                                                                 else ""))
            time.sleep(self.ctx.poll_interval)

    def check_signature(self, target: Target, built: Built) -> None:
        if not target.public_key:
            raise VerifyFailed("signature", f"target {target.name} has no public_key; add it "
                               "to the config so consumers (and verify) can check signatures")
        proc = self.nix.run("signature", self.nix.dialect.nix(
            "store", "verify", "--no-contents", "--store", self.nix.read_url(target, built.path),
            *trust(target.public_key), built.path), target=target, check=False)
        if proc.returncode != 0:
            names = sorted({s.partition(":")[0] for s in self.cache_signatures(target, built)})
            raise VerifyFailed("signature", f"no valid signature by {target.key_name} on "
                               f"{built.path} in {target.name} (signed by: "
                               f"{', '.join(names) or 'nobody'}): {summarize(proc.stderr)}")

    def cache_signatures(self, target: Target, built: Built) -> list[str]:
        """Signatures on the target's narinfo for the path; [] while it is not there."""
        info = self.nix.path_info("signature", target, built.path)
        return list(info.signatures) if info else []

    def delete(self, built: Built) -> None:
        """The queue roots the path until every target has it (docs/gc-roots.md): its root
        goes right after the last upload is recorded, a moment after the cache shows the
        path; with more targets to go it stays, and only `--ignore-liveness` deletes."""
        argv = [self.nix.program("nix-store"), "--delete", built.path]
        deadline = time.monotonic() + ROOT_RELEASE_WAIT
        while True:
            proc = self.nix.run("delete", argv, check=False)
            if proc.returncode == 0 or "still alive" not in proc.stderr:
                break
            if time.monotonic() > deadline:
                proc = self.nix.run("delete", [*argv, "--ignore-liveness"], check=False)
                break
            time.sleep(0.1)
        if proc.returncode != 0:
            raise VerifyFailed("delete", f"nix-store exited {proc.returncode}: "
                               f"{summarize(proc.stderr)}")
        if Path(built.path).exists():
            raise VerifyFailed("delete", f"{built.path} still exists after nix-store --delete")

    def substitute(self, target: Target, built: Built) -> None:
        key = target.public_key or ""
        if target.is_binary_cache:
            argv = [self.nix.program("nix-store"), "--realise", built.path, "--option",
                    "substituters", self.nix.read_url(target, built.path), *trust(key)]
        else:
            argv = self.nix.dialect.nix("copy", "--from", read_url(target), built.path,
                                        *trust(key))
        self.nix.run("substitute", argv, target=target)

    def compare(self, built: Built) -> None:
        try:
            content = Path(built.path).read_text(encoding="utf-8")
        except OSError as exc:
            raise VerifyFailed("compare", f"cannot read {built.path}: {exc}") from exc
        if content != built.content:
            raise VerifyFailed("compare", f"{built.path} came back with different content")
        nar_hash = self._nar_hash("compare", built.path)
        if nar_hash != built.nar_hash:
            raise VerifyFailed("compare", f"NAR hash {nar_hash} != {built.nar_hash}")

    def _nar_hash(self, step: str, path: str) -> str:
        argv = [self.nix.program("nix-store"), "--query", "--hash", path]
        return self.nix.run(step, argv).stdout.strip()
