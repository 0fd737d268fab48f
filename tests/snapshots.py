"""Fingerprints of a short run of every paper, to prove a refactoring changes no result bit for bit.

    python tests/snapshots.py --out /tmp/before.json            # on the old tree
    python tests/snapshots.py --out /tmp/after.json --compare /tmp/before.json

Each command runs ``main.py`` in a subprocess with its own empty ``$TFRESTORE_HOME`` and output folder (the same
paths every time); every ``.npy`` written (reconstructions, saved iterates, curves, trained artifacts' arrays) is
hashed, and ``metrics.json`` is hashed with its timing entries removed. A refactoring that keeps behaviour keeps
every hash. Not part of the test suite (it takes several minutes): run it before and after moving code.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASE = Path("/tmp/tfrestore-snapshots")

# name → main.py arguments: short runs that together pass through every paper's code path
COMMANDS = {
    "mv2015": ["--paper=mv2015", "--layers=conv1,relu3,fc8", "--steps=4"],
    "mv2015_beta": ["--paper=mv2015", "--experiment=beta", "--steps=3"],
    "mv2016": ["--paper=mv2016", "--layers=pool1,conv5", "--steps=4"],
    "mv2016_caricature": ["--paper=mv2016", "--experiment=caricature", "--steps=3"],
    "study": ["--paper=representation_study", "--experiment=resnet", "--steps=3"],
    "deconv": ["--paper=deconv", "--experiment=four_factor", "--steps=20"],
    "foe_train": ["--paper=foe_priors", "--experiment=train", "--prior=full512", "--steps=20"],
    "foe_image_rec": ["--paper=foe_priors", "--layers=conv1", "--steps=4", "--prior_steps=20"],
    "dip": ["--paper=dip", "--task=denoise", "--size=64", "--steps=6"],
    "ae_train": ["--paper=ae_prior", "--task=train", "--steps=30"],
    "adversarial": ["--paper=adversarial", "--net=digits", "--experiment=mean_filter", "--attack=fgsm"],
    "layer_inversion": ["--paper=layer_inversion", "--net=digits", "--layers=conv1", "--steps=20"],
    "forward": ["--paper=forward", "--net=alexnet", "--layers=conv1,fc8"],
}
_TIMING = ("seconds", "per_s", "_s_per", "wall", "rate", "time", "created", "versions")


def _strip(obj):
    """metrics.json without wall-clock entries (they differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not any(t in k for t in _TIMING)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def fingerprint(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.suffix == ".npy":
            a = np.load(p, allow_pickle=False)
            out[rel] = hashlib.sha256(a.tobytes() + str(a.shape).encode()).hexdigest()[:16]
        elif p.name == "metrics.json":
            text = json.dumps(_strip(json.loads(p.read_text())), sort_keys=True)
            out[rel] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def _comparable(files: dict[str, str]) -> dict[str, str]:
    """Outputs by path; stored artifacts by file name and content only (a refactoring may move the store's
    layout — e.g. ``priors/<net>/<name>/`` to ``prior/<net>/<name>/<digest>/`` — without changing a bit)."""
    out = {k: v for k, v in files.items() if not k.startswith("home/")}
    names: dict[str, list[str]] = {}
    for k, v in files.items():
        if k.startswith("home/"):
            names.setdefault(k.rsplit("/", 1)[-1], []).append(v)
    out.update({f"home/*/{n}": ",".join(sorted(v)) for n, v in names.items()})
    return out


def run(name: str, args: list[str]) -> dict:
    work = BASE / name
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "TFRESTORE_HOME": str(work / "home"), "PYTHONHASHSEED": "0"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), *args, f"--out={work / 'out'}"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    files = {**{f"out/{k}": v for k, v in fingerprint(work / "out").items()},
             **{f"home/{k}": v for k, v in fingerprint(work / "home").items()}} if r.returncode == 0 else {}
    return {"args": args, "returncode": r.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "files": files, "stderr_tail": r.stderr[-1500:] if r.returncode else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--compare")
    parser.add_argument("--only", help="comma-separated command names")
    a = parser.parse_args()
    names = a.only.split(",") if a.only else list(COMMANDS)
    results = {}
    for name in names:
        results[name] = run(name, COMMANDS[name])
        r = results[name]
        print(f"{name:<18} rc {r['returncode']}  {r['seconds']:>6.1f} s  {len(r['files'])} files", flush=True)
        if r["returncode"]:
            print(r["stderr_tail"], flush=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    if not a.compare:
        return 0
    before = json.loads(Path(a.compare).read_text())
    differ = 0
    for name in names:
        old, new = (_comparable(before.get(name, {}).get("files", {})), _comparable(results[name]["files"]))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        differ += bool(changed)
        print(f"{name:<18} {'identical' if not changed else 'DIFFERS: ' + ', '.join(changed[:8])}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
