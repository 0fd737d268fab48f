"""Convert the original Caffe and ONNX weight files into tfrestore's weight store.

    python -m weights_convert caffe --net alexnet --prototxt deploy.prototxt --caffemodel bvlc_alexnet.caffemodel
    python -m weights_convert onnx --net resnet18 --onnx resnet18-v1-7.onnx --verify
"""


class ConversionError(Exception):
    """A weight file that cannot be converted: names the file, the layer and what was expected."""
