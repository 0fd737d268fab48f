"""The artifact store: atomic builds with manifests, checks on load, one build for concurrent requests, the CLI."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfrestore.core import store

ROOT = Path(__file__).resolve().parents[1]


def _make(content: bytes = b"weights", extra: dict | None = None):
    def make(work, out):
        (out / "model.bin").write_bytes(content)
        (out / "sub").mkdir()
        (out / "sub" / "notes.json").write_text(json.dumps(extra or {}))
        return {"trained_steps": 12}
    return make


def test_build_writes_a_manifest_and_load_verifies_it():
    key = store.Key("prior", "alexnet/full512", {"steps": 100, "data": "embedded"})
    art = store.build(key, _make(), command="python main.py --paper=foe_priors --experiment=train")
    m = json.loads((key.path / "manifest.json").read_text())
    assert m["kind"] == "prior" and m["name"] == "alexnet/full512" and m["digest"] == key.digest
    assert m["config"] == {"steps": 100, "data": "embedded"} and m["meta"] == {"trained_steps": 12}
    import hashlib
    assert m["files"]["model.bin"] == {"size": 7, "sha256": hashlib.sha256(b"weights").hexdigest()}
    assert set(m["files"]) == {"model.bin", "sub/notes.json"} and "tensorflow" in m["versions"]
    assert art.file("model.bin").read_bytes() == b"weights" and store.load(key).meta["trained_steps"] == 12
    assert not key.work.exists()                                 # the work folder goes once committed
    other = store.Key("prior", "alexnet/full512", {"steps": 100, "data": "/my/folder"})
    assert other.digest != key.digest and store.load(other) is None   # other settings: another artifact


def test_a_second_build_reuses_and_overwrite_replaces():
    key = store.Key("classifier", "digits", {"steps": 5})
    calls = []

    def make(work, out):
        calls.append(1)
        (out / "w.bin").write_bytes(b"%d" % len(calls))
    store.build(key, make)
    assert store.build(key, make).file("w.bin").read_bytes() == b"1" and len(calls) == 1
    assert store.build(key, make, overwrite=True).file("w.bin").read_bytes() == b"2"


@pytest.mark.parametrize("damage", ["truncate", "edit", "delete", "manifest"])
def test_a_damaged_artifact_is_one_error_naming_the_file_and_the_rebuild_command(damage):
    key = store.Key("prior", "alexnet/full512", {"steps": 1})
    store.build(key, _make(b"0123456789"), command="python main.py --paper=foe_priors --prior=full512")
    store.verify(key)                                            # hashes once, then remembers size + mtime
    f = key.path / "model.bin"
    if damage == "truncate":
        f.write_bytes(b"0123")
    elif damage == "edit":
        f.write_bytes(b"012345678X")                             # same size: only the hash tells
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10 ** 9))
    elif damage == "delete":
        f.unlink()
    else:
        (key.path / "manifest.json").write_text("{not json")
    with pytest.raises(store.ArtifactError) as e:
        store.load(key)
    msg = str(e.value)
    assert "\n" not in msg and "python -m tfrestore.core.store remove prior alexnet/full512" in msg
    if damage != "manifest":
        assert str(f) in msg and "--overwrite" in msg


def test_an_interrupted_build_leaves_nothing_in_place_and_the_next_one_continues_from_its_work():
    key = store.Key("inverter", "alexnet/DC1", {"steps": 3})

    def crashing(work, out):
        (work / "ckpt").write_text("step 2")
        (out / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt("killed")
    with pytest.raises(KeyboardInterrupt):
        store.build(key, crashing)
    assert not key.path.exists() and (key.work / "ckpt").read_text() == "step 2"
    assert not list(key.path.parent.glob(".*staging*"))

    def resuming(work, out):
        (out / "done.bin").write_text((work / "ckpt").read_text())
    assert store.build(key, resuming).file("done.bin").read_text() == "step 2"


def test_two_processes_asking_for_the_same_artifact_build_it_once(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tfrestore.core import store
        waiting = {str(tmp_path / 'waiting')!r}
        def make(work, out):
            with open({str(tmp_path / 'builds.log')!r}, 'a') as f:
                f.write('built\\n')
            t0 = time.time()                     # hold the lock until the other process waits for it
            while not __import__('os').path.exists(waiting) and time.time() - t0 < 60:
                time.sleep(0.05)
            (out / 'prior.bin').write_text('ok')
        def say(line):
            print(line, flush=True)
            open(waiting, 'w').close()
        art = store.build(store.Key('prior', 'alexnet/full512', {{'steps': 7}}), make, say=say)
        print(art.path)
    """)
    env = {**os.environ}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert (tmp_path / "builds.log").read_text() == "built\n"             # one build, not two
    assert len({o[0].strip().splitlines()[-1] for o in outs}) == 1
    assert any("waiting for process" in o[0] and "to finish building prior alexnet/full512" in o[0]
               for o in outs), outs                                       # the second one said why it waited


def test_command_line_lists_verifies_and_removes():
    good = store.Key("prior", "alexnet/full512", {"steps": 1})
    bad = store.Key("autoencoder", "latent10", {"steps": 2})
    store.build(good, _make())
    store.build(bad, _make(b"abc"))
    (bad.path / "model.bin").write_bytes(b"a")
    cli = lambda *a: subprocess.run([sys.executable, "-m", "tfrestore.core.store", *a], capture_output=True,   # noqa
                                    text=True, cwd=ROOT, timeout=60)
    r = cli("list")
    assert r.returncode == 0 and "alexnet/full512" in r.stdout and "latent10" in r.stdout
    r = cli("verify")
    errors = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: ") and "model.bin" in errors[0]
    assert "ok     prior alexnet/full512" in r.stdout
    r = cli("remove", "autoencoder", "latent10")
    assert r.returncode == 0 and not bad.path.exists() and good.path.exists()
    assert cli("remove", "autoencoder", "latent10").returncode == 2


def test_keys_refuse_paths_that_escape_the_store():
    for kind, name in (("prior", "../x"), ("..", "a"), ("prior", ""), ("prior", "a/.hidden")):
        with pytest.raises(ValueError, match="plain path parts"):
            store.Key(kind, name, {})
