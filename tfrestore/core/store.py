"""The one store for everything tfrestore trains or converts on demand: patch priors, learned inverters, the digits
classifier, autoencoders, converted network weights.

An artifact is a directory under ``$TFRESTORE_HOME`` (default ``~/.tfrestore``)::

    <kind>/<name>/<digest>/manifest.json     kind, name, config and its digest, package versions, the command
                                              that rebuilds it, and every file with its size and SHA-256
    <kind>/<name>/<digest>/<files>
    <kind>/<name>/<digest>.work/             an unfinished build (checkpoints): a rerun continues from it
    <kind>/<name>/<digest>.lock              held while one process builds; a second one waits for it

``digest`` is the hash of the artifact's config (what determines it: the catalogue entry, training steps, the data
it was trained on, the seed), so different settings never overwrite each other and the same settings are built
once. An artifact appears whole or not at all: it is built aside (``.<digest>.staging-<pid>``) and renamed into
place with its manifest. Loading checks it: a missing, truncated or edited file is one :class:`ArtifactError`
line naming the file and the command that rebuilds it — never a traceback, never used silently. (Files are
hashed on first load and again whenever their size or modification time changes.)

    key = store.Key("prior", "alexnet/full512", {"entry": ..., "steps": 25000, "data": "embedded", "seed": 0})
    art = store.build(key, make, command="python main.py --paper=foe_priors --experiment=train --prior=full512")
    art.file("prior.h5")

Command line: ``python -m tfrestore.core.store list | verify | remove KIND NAME [DIGEST]`` (as Hugging Face's
``scan-cache`` / ``delete-cache``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

from . import log

MANIFEST = "manifest.json"
_VERIFIED = ".verified.json"          # (size, mtime) of files whose hash matched: no re-hash while unchanged
FORMAT = "tfrestore-artifact-1"


class ArtifactError(ValueError):
    """A stored artifact that cannot be used (missing, truncated or edited file, foreign manifest); one line."""


def home() -> Path:
    """``$TFRESTORE_HOME`` (default ``~/.tfrestore``)."""
    return Path(os.environ.get("TFRESTORE_HOME", Path.home() / ".tfrestore")).expanduser()


def _canonical(config: Mapping) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


@dataclasses.dataclass(frozen=True)
class Key:
    """What identifies an artifact: its kind, its name (``/`` groups, e.g. ``alexnet/full512``) and its config."""
    kind: str
    name: str
    config: Mapping = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for part in (self.kind, *self.name.split("/")):
            if not part or part in (".", "..") or part.startswith("."):
                raise ValueError(f"an artifact kind and name are plain path parts, got {self.kind!r} {self.name!r}")

    @property
    def digest(self) -> str:
        """12 hex digits of the SHA-256 of the config's canonical JSON."""
        return hashlib.sha256(_canonical(self.config).encode()).hexdigest()[:12]

    @property
    def path(self) -> Path:
        return home() / self.kind / self.name / self.digest

    @property
    def work(self) -> Path:
        """Where an unfinished build keeps its checkpoints and caches (removed once the artifact is in place)."""
        return self.path.with_name(self.digest + ".work")

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.digest})"


@dataclasses.dataclass(frozen=True)
class Artifact:
    key: Key
    path: Path
    manifest: dict

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise ArtifactError(f"{self.key} has no file '{name}' (it has {', '.join(self.manifest['files'])})")
        return self.path / name

    @property
    def meta(self) -> dict:
        """What the builder recorded (training summary, data description, …)."""
        return self.manifest.get("meta", {})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _listing(directory: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name not in (MANIFEST, _VERIFIED):
            out[p.relative_to(directory).as_posix()] = {"size": p.stat().st_size, "sha256": _sha256(p)}
    return out


def _versions() -> dict[str, str]:
    from importlib import metadata
    out = {"python": sys.version.split()[0]}
    for pkg in ("tfrestore", "tensorflow", "keras", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _remedy(manifest: dict, key: Key) -> str:
    cmd = manifest.get("command")
    remove = f"python -m tfrestore.core.store remove {key.kind} {key.name} {key.digest}"
    return f"rebuild it with `{cmd} --overwrite`, or remove it with `{remove}`" if cmd else f"remove it with `{remove}`"


def verify(key: Key) -> Artifact:
    """The artifact, after checking every file against its manifest; raises :class:`ArtifactError`."""
    path = key.path
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{key}: {path / MANIFEST} is missing") from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{key}: {path / MANIFEST} cannot be read ({e}); remove it with "
                            f"`python -m tfrestore.core.store remove {key.kind} {key.name} {key.digest}`") from None
    if manifest.get("format") != FORMAT or manifest.get("digest") != key.digest:
        raise ArtifactError(f"{key}: {path / MANIFEST} is not this artifact's manifest; {_remedy(manifest, key)}")
    try:
        seen = json.loads((path / _VERIFIED).read_text())
    except (OSError, ValueError):
        seen = {}
    fresh = {}
    for name, want in manifest["files"].items():
        f = path / name
        if not f.is_file():
            raise ArtifactError(f"{key}: {f} is missing; {_remedy(manifest, key)}")
        st = f.stat()
        if st.st_size != want["size"]:
            raise ArtifactError(f"{key}: {f} has {st.st_size:,} bytes, the manifest says {want['size']:,} "
                                f"(truncated or replaced); {_remedy(manifest, key)}")
        stamp = [st.st_size, st.st_mtime_ns]
        if seen.get(name) != stamp:
            if _sha256(f) != want["sha256"]:
                raise ArtifactError(f"{key}: {f} was changed after it was stored (SHA-256 differs); "
                                    f"{_remedy(manifest, key)}")
        fresh[name] = stamp
    if fresh != seen:
        with contextlib.suppress(OSError):            # a read-only store is verified again next time
            (path / _VERIFIED).write_text(json.dumps(fresh))
    return Artifact(key, path, manifest)


def load(key: Key) -> Artifact | None:
    """The verified artifact, or None when it has not been built."""
    return verify(key) if key.path.exists() else None


@contextlib.contextmanager
def lock(key: Key, say: Callable[[str], None] = log.status) -> Iterator[None]:
    """Exclusive across processes: a second process building the same artifact waits here until the first is
    done, then finds the artifact in place instead of building it again."""
    lock_path = key.path.with_name(key.digest + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(50):                  # the holder writes its pid just after taking the lock
                f.seek(0)
                holder = f.read().strip()
                if holder:
                    break
                time.sleep(0.01)
            holder = holder or "another process"
            say(f"waiting for {holder} to finish building {key}")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def build(key: Key, make: Callable[[Path, Path], dict | None], *, command: str = "", overwrite: bool = False,
          say: Callable[[str], None] = log.status) -> Artifact:
    """The artifact, built first if it is not there (or ``overwrite``).

    ``make(work, out)`` writes the artifact's files into ``out`` and may keep resumable state (checkpoints,
    caches) in ``work``, which survives an interruption and is removed once the artifact is committed; it
    returns metadata to record in the manifest. ``command`` is how a user rebuilds it (quoted in errors).
    """
    with lock(key, say):
        existing = None if overwrite else load(key)      # overwrite: a damaged one is rebuilt, not refused
        if existing is not None:
            return existing
        key.work.mkdir(parents=True, exist_ok=True)
        staging = key.path.with_name(f".{key.digest}.staging-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            meta = make(key.work, staging) or {}
            manifest = {"format": FORMAT, "kind": key.kind, "name": key.name, "digest": key.digest,
                        "config": json.loads(_canonical(key.config)), "command": command, "meta": meta,
                        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        "versions": _versions(), "files": _listing(staging)}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            if key.path.exists():                         # overwrite: the old one goes only now
                old = key.path.with_name(f".{key.digest}.old-{os.getpid()}")
                os.rename(key.path, old)
                os.rename(staging, key.path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(staging, key.path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(key.work, ignore_errors=True)
        return verify(key)


def entries(kind: str | None = None) -> list[dict]:
    """Every artifact's manifest summary (kind, name, digest, size, created, config), unverified."""
    root = home()
    out = []
    for manifest in sorted(root.glob(f"{kind or '*'}/**/{MANIFEST}")):
        if manifest.parent.name.startswith("."):         # a build being staged or an overwritten one going
            continue
        try:
            m = json.loads(manifest.read_text())
        except (OSError, ValueError):
            m = {"kind": "?", "name": str(manifest.parent.relative_to(root)), "digest": "?", "files": {}}
        m["path"] = str(manifest.parent)
        m["bytes"] = sum(f.get("size", 0) for f in m.get("files", {}).values())
        out.append(m)
    for work in sorted(root.glob(f"{kind or '*'}/**/*.work")):
        out.append({"kind": work.relative_to(root).parts[0], "name": "/".join(work.relative_to(root).parts[1:-1]),
                    "digest": work.name[:-5], "path": str(work), "unfinished": True,
                    "bytes": sum(p.stat().st_size for p in work.rglob("*") if p.is_file())})
    return out


def find(kind: str, name: str) -> list[Key]:
    """The keys of every stored artifact of that kind and name (any config), newest first."""
    found = []
    for e in entries(kind):
        if e.get("name") == name and not e.get("unfinished") and "config" in e:
            found.append((e.get("created", ""), Key(kind, name, e["config"])))
    return [k for _, k in sorted(found, key=lambda t: t[0], reverse=True)]


def remove(kind: str, name: str, digest: str | None = None) -> list[Path]:
    """Delete an artifact (every config of it without ``digest``), unfinished work included."""
    base = home() / kind / name
    gone = []
    for p in sorted(base.glob(f"{digest or '*'}*")) if base.is_dir() else []:
        if p.is_dir() and (p.name == digest or digest is None or p.name.startswith(digest)):
            shutil.rmtree(p)
            gone.append(p)
        elif p.suffix == ".lock":
            p.unlink()
    return gone


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m tfrestore.core.store",
                                     description=f"tfrestore's artifact store ({home()})")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="every stored artifact with its size and config")
    ls.add_argument("kind", nargs="?")
    ver = sub.add_parser("verify", help="check every file of every artifact against its manifest")
    ver.add_argument("kind", nargs="?")
    rm = sub.add_parser("remove", help="delete an artifact (all its configs unless DIGEST is given)")
    rm.add_argument("kind")
    rm.add_argument("name")
    rm.add_argument("digest", nargs="?")
    args = parser.parse_args(argv)
    if args.command == "list":
        rows = entries(args.kind)
        if not rows:
            print(f"nothing stored in {home()}")
        for e in rows:
            state = "UNFINISHED" if e.get("unfinished") else e.get("created", "")
            cfg = _canonical(e.get("config", {}))
            print(f"{e['kind']:<12} {e['name']:<32} {e['digest']:<13} {_size(e['bytes']):>9}  {state}  "
                  f"{cfg[:60] + ('…' if len(cfg) > 60 else '')}")
        return 0
    if args.command == "verify":
        bad = 0
        for e in entries(args.kind):
            if e.get("unfinished") or "config" not in e:
                continue
            try:
                verify(Key(e["kind"], e["name"], e["config"]))
                print(f"ok     {e['kind']} {e['name']} ({e['digest']})")
            except ArtifactError as err:
                bad += 1
                print(f"error: {err}", file=sys.stderr)
        return 2 if bad else 0
    gone = remove(args.kind, args.name, args.digest)
    print("\n".join(f"removed {p}" for p in gone) or f"nothing matched {args.kind} {args.name} {args.digest or ''}")
    return 0 if gone else 2


if __name__ == "__main__":
    sys.exit(main())
