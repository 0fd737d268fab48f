"""Distributed training on a real engine: two local worker processes under MultiWorkerMirroredStrategy
(TF_CONFIG, ring all-reduce over localhost gRPC) train the same tiny prior and inverter chain as one process with the
same global batch, to the same weights (tests/multiworker_job.py is the worker)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "tests" / "multiworker_job.py"


def _free_ports(n: int) -> list[int]:
    """n ports the OS says are free now (held open together, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start(out: Path, tf_config: dict | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, str(JOB), str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_workers_train_a_prior_and_an_inverter_to_the_one_process_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = {str(i): _start(tmp_path / "multi", {"cluster": cluster, "task": {"type": "worker", "index": i}})
             for i in range(2)}
    procs["single"] = _start(tmp_path / "single", None)        # the reference, at the same time (no TF_CONFIG)
    logs = {}
    try:
        for who, p in procs.items():
            logs[who] = p.communicate(timeout=240)[0]
    finally:
        for p in procs.values():                                # a worker left waiting for its peer
            if p.poll() is None:
                p.kill()
                p.communicate()
    for who, p in procs.items():
        assert p.returncode == 0, f"worker {who} exited with {p.returncode}:\n{logs.get(who, '')[-3000:]}"

    single = np.load(tmp_path / "single" / "weights_single.npz")
    w0, w1 = (np.load(tmp_path / "multi" / f"weights_{i}.npz") for i in range(2))
    assert sorted(w0.files) == sorted(w1.files) == sorted(single.files)
    assert {k.split("/")[0] for k in single.files} == {"prior", "M1", "M2"}
    for k in single.files:
        # the ring all-reduce hands both workers the same sums: their copies are bit for bit the same
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
        # against one process: the global gradient is summed in another order (two half-batch means all-reduced
        # instead of one batch mean), a float32 round-off of ~1e-7 relative per step, carried through 12 Adam
        # steps: measured ≤ 1e-6 absolute on weights of size 1e-4…1. The tolerance (1e-5 + 1e-5·|w|) is 10× that,
        # and 300× below one Adam step (lr 3e-3 inverter, 5e-2 prior): a lost, repeated or half batch fails.
        np.testing.assert_allclose(w0[k], single[k], rtol=1e-5, atol=1e-5, err_msg=k)

    losses = {who: json.loads((tmp_path / ("single" if who == "single" else "multi") / f"losses_{who}.json")
                              .read_text()) for who in procs}
    assert [losses[w]["replicas"] for w in ("0", "1", "single")] == [2, 2, 1]
    for who, l in losses.items():
        # the trainings learnt: held-out loss below its value at the initial weights
        assert l["prior_after"] < l["prior_before"] - 0.1 and l["inverter_after"] < 0.9 * l["inverter_before"], l
        assert l["prior_resumed_steps"] == 4, l        # stopped at 8 of 12, resumed from the chief's checkpoint
    # the checkpoints are the chief's alone: the other worker's temporary copies were removed
    ckpts = sorted(str(p.relative_to(tmp_path / "multi")) for p in (tmp_path / "multi").rglob("ckpt-*"))
    assert ckpts == ["inverter/ckpt/ckpt-12.data-00000-of-00001", "inverter/ckpt/ckpt-12.index",
                     "prior/ckpt/ckpt-12.data-00000-of-00001", "prior/ckpt/ckpt-12.index"], ckpts
    assert not list((tmp_path / "multi").rglob("workertemp_*"))
