"""Convert the original Caffe and ONNX weight files into tfrestore's weight store.

    python -m weights_convert caffe --net alexnet --prototxt deploy.prototxt --caffemodel bvlc_alexnet.caffemodel
    python -m weights_convert onnx --net resnet18 --onnx resnet18-v1-7.onnx --verify

Every file is validated against the architecture it claims before a byte is written; anything wrong is one
:class:`ConversionError`.
"""

MAX_MESSAGE = 600     # characters: a parser's message about a deeply nested file can run to hundreds of thousands


class ConversionError(Exception):
    """A weight file that cannot be converted: names the file, the layer or node, what was expected and what was
    found (and, for structural damage, the byte offset). One line, at most ``MAX_MESSAGE`` characters."""

    def __init__(self, message: str):
        text = " ".join(str(message).split())
        if len(text) > MAX_MESSAGE:
            text = text[:MAX_MESSAGE - 40] + f" … ({len(text) - MAX_MESSAGE + 40} more characters)"
        super().__init__(text)
