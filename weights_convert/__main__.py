"""``python -m weights_convert {caffe,onnx} --net NET …`` — convert an original weight file into the weight store."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from . import ConversionError  # noqa: E402
from .architecture import ALLOW_FLAG, MAGNITUDE_LIMITS  # noqa: E402
from tfrestore.core.store import ArtifactError  # noqa: E402

_ALLOW_HELP = ("convert a file holding values larger than any trained network of these families has ("
               + "; ".join(f"{r.what} {r.limit:.0e}" for r in MAGNITUDE_LIMITS.values())
               + "); refused by default as the mark of a damaged file (a flipped exponent bit)")


def convertible_nets(weight_format: str) -> tuple[str, ...]:
    """The registered nets whose original weights come in ``weight_format`` ("caffe" or "onnx"): the registry's
    ``weight_format`` fact, so a new net needs no change here."""
    from tfrestore import nets
    return tuple(n for n in nets.net_names() if nets.spec(n).weight_format == weight_format)


def _args(argv):
    caffe_nets, onnx_nets = convertible_nets("caffe"), convertible_nets("onnx")
    p = argparse.ArgumentParser(prog="python -m weights_convert", description=__doc__)
    sub = p.add_subparsers(dest="format", required=True)
    c = sub.add_parser("caffe", help=f"a .caffemodel (+ deploy.prototxt) of {', '.join(caffe_nets)}")
    c.add_argument("--net", required=True, choices=caffe_nets)
    c.add_argument("--caffemodel", required=True, type=Path)
    c.add_argument("--prototxt", type=Path, help="deploy prototxt (default: the layer parameters in the caffemodel)")
    o = sub.add_parser("onnx", help=f"an .onnx file of {', '.join(onnx_nets)} (zoo or torchvision export)")
    o.add_argument("--net", required=True, choices=onnx_nets)
    o.add_argument("--onnx", required=True, type=Path)
    for s in (c, o):
        s.add_argument("--out", type=Path, help="output .weights.h5 (default: the artifact store, installed where "
                       "nets.build looks: $TFRESTORE_HOME/weights/<net>.weights.h5)")
        s.add_argument("--verify", action="store_true",
                       help="run the original in its own runtime (OpenCV / onnxruntime) and compare every layer")
        s.add_argument("--image", default="chelsea", help="image for --verify (sample name or path)")
        s.add_argument(ALLOW_FLAG, action="store_true", help=_ALLOW_HELP)
        s.add_argument("--width", type=float, default=1.0, help=argparse.SUPPRESS)   # slim test nets
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.add_argument("--debug", action="store_true",
                       help="show the traceback of an unexpected error, and TensorFlow's start-up notices")
    return p.parse_args(argv)


def _structure_prototxt(caffemodel: Path, size: int) -> Path:
    """A deploy prototxt rebuilt from the layer parameters stored in a caffemodel (for OpenCV when none is given)."""
    from google.protobuf import text_format
    from .caffe import read_caffemodel
    from .caffe_proto import NetParameter
    layers, _, _ = read_caffemodel(caffemodel, progress=False)
    net = NetParameter(name="from_caffemodel", input=["data"], input_dim=[1, 3, size, size])
    for l in layers:
        if l.type in ("Data", "Input", "SoftmaxWithLoss", "Accuracy"):
            continue
        m = net.layer.add(name=l.name, type=l.type, bottom=[b if b != "label" else "data" for b in l.bottom][:1],
                          top=l.top)
        p = l.params
        if l.type == "Convolution":
            cp = m.convolution_param
            cp.num_output, cp.group, cp.bias_term = p["num_output"], p["group"], p["bias"]
            (cp.kernel_h, cp.kernel_w), (cp.stride_h, cp.stride_w), (cp.pad_h, cp.pad_w) = \
                p["kernel"], p["stride"], p["pad"]
        elif l.type == "InnerProduct":
            m.inner_product_param.num_output = p["num_output"]
        elif l.type == "Pooling":
            pp = m.pooling_param
            pp.pool, (pp.kernel_h, pp.kernel_w), (pp.stride_h, pp.stride_w), (pp.pad_h, pp.pad_w) = \
                p["pool"], p["kernel"], p["stride"], p["pad"]
        elif l.type == "LRN":
            lp = m.lrn_param
            lp.local_size, lp.alpha, lp.beta, lp.k = p["local_size"], p["alpha"], p["beta"], p["k"]
    fd, path = tempfile.mkstemp(suffix=".prototxt")
    os.close(fd)
    Path(path).write_text(text_format.MessageToString(net))
    return Path(path)


def _status(key: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _memory_reset() -> float:
    """Reset the peak-RSS counter (Linux) and return the current RSS in MiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS")


def _memory_peak() -> float:
    return _status("VmHWM")


def main(argv=None) -> int:
    """Exit codes: 0 converted (and verified), 1 converted but --verify found a difference or could not run the
    original, 2 the file cannot be converted (one ``error:`` line; nothing written)."""
    if "--debug" not in (sys.argv[1:] if argv is None else argv):
        from tfrestore.core import quiet
        quiet.start_tensorflow()        # before _args (its --net choices import the nets); --debug keeps them
    a = _args(argv)
    try:
        return _run(a)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ArtifactError as e:      # a damaged stored conversion: one line naming its file and the command
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 2
    except Exception as e:          # a bug, not a bad file: still one line (the traceback with --debug)
        if a.debug:
            raise
        text = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        print(f"error: unexpected failure converting {getattr(a, 'caffemodel', None) or a.onnx} ({text}); nothing "
              "was written — please report this with the file (--debug shows the traceback)", file=sys.stderr)
        return 2


def _run(a) -> int:
    from tfrestore import nets
    from tfrestore.nets import weights
    from . import verify

    kwargs = {"width": a.width} if a.width != 1.0 else {}
    model = nets.build(a.net, weights=None, quiet=True, **kwargs)
    if a.out:
        info = _convert(a, model, a.out)
        out = a.out
    else:
        out, info = _convert_into_store(a, model)
    if not a.verify:
        return 0
    weights.load_weights(model, out)
    try:
        if a.format == "caffe":
            import cv2  # noqa: F401
            rows = _verify_caffe(a, model, verify)
            runtime = "OpenCV Caffe"
        else:
            import onnxruntime  # noqa: F401
            rows = verify.compare_onnx(model, a.net, a.onnx, info["tensor_of_layer"], a.image)
            runtime = "onnxruntime"
    except ImportError as e:
        print(f"--verify skipped: the reference runtime is not installed ({e}); pip install '.[test]'")
        return 0
    except Exception as e:          # the reference runtime refused the file: the conversion itself stands
        text = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        print(f"error: --verify could not run the original in its reference runtime ({text}); the converted "
              f"weights are in {out}, unverified", file=sys.stderr)
        return 1
    return 0 if verify.print_table(rows, runtime) else 1


def _convert(a, model, out: Path) -> dict:
    """Convert the original file into ``out`` (atomic: no file unless it all succeeds); the converters' notes."""
    from tfrestore.nets import weights
    baseline = _memory_reset()
    t0 = time.perf_counter()
    source = str(a.caffemodel if a.format == "caffe" else a.onnx)
    with weights.array_writer(out, a.net, source) as write:
        if a.format == "caffe":
            from . import caffe
            _, info = caffe.convert(model, a.caffemodel, a.prototxt, progress=not a.quiet, sink=write,
                                    allow_huge_weights=a.allow_huge_weights)
        else:
            from . import onnx_convert
            arrays, info = onnx_convert.convert(model, a.onnx, allow_huge_weights=a.allow_huge_weights)
            for layer, ws in arrays.items():
                write(layer, ws)
    seconds = time.perf_counter() - t0
    growth = _memory_peak() - baseline
    size = Path(source).stat().st_size / 2 ** 20
    print(f"converted {source} ({size:.1f} MiB, {info.get('format', 'ONNX')}) → {out} in {seconds:.1f}s; "
          f"peak memory {growth:.0f} MiB above the pre-conversion baseline ({growth / size:.2f}× the file)",
          flush=True)
    for note in info.get("converted", []):
        print(f"note: {note}")
    return info


def store_key(a):
    """The artifact store's key of a conversion: the original file's content (SHA-256) and what changes the
    converted weights; converting the same file again reuses the stored result."""
    from tfrestore.core import store
    from tfrestore.nets import weights
    source = a.caffemodel if a.format == "caffe" else a.onnx
    config = {"format": a.format, "source": Path(source).name, "source_sha256": weights.file_sha256(source),
              "prototxt_sha256": weights.file_sha256(a.prototxt) if getattr(a, "prototxt", None) else None,
              "width": a.width, "allow_huge_weights": bool(a.allow_huge_weights)}
    return store.Key("converted", a.net, config)


def _convert_into_store(a, model) -> tuple[Path, dict]:
    """The conversion as a store artifact (``converted/<net>/<digest>/``), installed where ``nets.build`` looks;
    the installed path and what the conversion recorded."""
    from tfrestore.core import store
    from tfrestore.nets import weights
    key = store_key(a)
    source = a.caffemodel if a.format == "caffe" else a.onnx
    command = " ".join(["python -m weights_convert", a.format, "--net", a.net,
                        f"--{'caffemodel' if a.format == 'caffe' else 'onnx'}", str(source)]
                       + (["--prototxt", str(a.prototxt)] if getattr(a, "prototxt", None) else []))

    def make(work: Path, out: Path) -> dict:
        info = _convert(a, model, out / f"{a.net}.weights.h5")
        return {"source": str(source), "notes": info.get("converted", []), "format": info.get("format", "ONNX"),
                "tensor_of_layer": info.get("tensor_of_layer")}       # what --verify compares, also on reuse

    existed = store.load(key) is not None
    art = store.build(key, make, command=command)
    if existed:
        print(f"{source} was converted before: using the stored {art.path}", flush=True)
    return weights.install(art, a.net), dict(art.meta)


def _verify_caffe(a, model, verify):
    """OpenCV needs a prototxt: the given one, or one rebuilt from the caffemodel (a temporary file, always removed)."""
    if a.prototxt:
        return verify.compare_caffe(model, a.net, a.prototxt, a.caffemodel, a.image)
    proto = _structure_prototxt(a.caffemodel, int(model.input.shape[1]))
    try:
        return verify.compare_caffe(model, a.net, proto, a.caffemodel, a.image)
    finally:
        proto.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
