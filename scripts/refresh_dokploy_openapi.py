"""Refresh the vendored copy of Dokploy's OpenAPI document (tests/dokploy/openapi/).

    python scripts/refresh_dokploy_openapi.py [--ref main] [--check-only FILE]

Downloads `apps/docs/public/openapi.json` from Dokploy/website at REF, checks that it is an
OpenAPI document holding every operation the portal's client calls, writes it next to
SOURCE.md and updates the commit and checksum recorded there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "dokploy" / "openapi" / "openapi.json"
SOURCE = TARGET.with_name("SOURCE.md")
REPOSITORY = "Dokploy/website"
FILE = "apps/docs/public/openapi.json"
CLIENT = ROOT / "stacks" / "dokploy" / "client.py"


def endpoints_the_client_calls() -> set[str]:
    """Every `"<router>.<procedure>"` string in the client (its logger's name aside)."""
    text = CLIENT.read_text(encoding="utf-8")
    found = set(re.findall(r'"([a-z][A-Za-z]*\.[a-z][A-Za-z]*)"', text))
    return {name for name in found if not name.startswith("stacks.")}


def check(document: object) -> list[str]:
    if not isinstance(document, dict) or "paths" not in document:
        return ["not an OpenAPI document (no 'paths')"]
    paths = document["paths"]
    wanted = sorted(endpoints_the_client_calls())
    return [f"missing /{name}" for name in wanted if f"/{name}" not in paths]


def resolve(ref: str) -> str:
    """The full commit id of REF (a branch, tag or commit)."""
    answer = httpx.get(
        f"https://api.github.com/repos/{REPOSITORY}/commits/{ref}",
        headers={"Accept": "application/vnd.github+json"},
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["sha"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="branch, tag or commit of Dokploy/website")
    parser.add_argument("--check-only", type=Path, help="check a local file instead")
    args = parser.parse_args(argv)

    if args.check_only:
        problems = check(json.loads(args.check_only.read_text(encoding="utf-8")))
        found_all = f"{args.check_only}: every endpoint the client calls is there"
        print("\n".join(problems) or found_all)
        return 1 if problems else 0

    commit = resolve(args.ref)
    url = f"https://raw.githubusercontent.com/{REPOSITORY}/{commit}/{FILE}"
    content = httpx.get(url, timeout=60, follow_redirects=True).raise_for_status().content
    problems = check(json.loads(content))
    if problems:
        print(f"refusing {url}:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    TARGET.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    source = SOURCE.read_text(encoding="utf-8")
    source = re.sub(
        r"\| Commit \| `[0-9a-f]{40}`[^|]*\|", f"| Commit | `{commit}` ({args.ref}) |", source
    )
    source = re.sub(r"\| SHA-256 \| `[0-9a-f]{64}` \|", f"| SHA-256 | `{digest}` |", source)
    source = re.sub(r"\| Size \| [\d,]+ bytes \|", f"| Size | {len(content):,} bytes |", source)
    SOURCE.write_text(source, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} from {commit} ({len(content):,} bytes, {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
