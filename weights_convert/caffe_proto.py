"""The subset of Caffe's published schema (``src/caffe/proto/caffe.proto``) that the converters need.

The messages are declared as a table of (field name, number, type, label, message/enum type) and turned into real
protobuf classes with ``descriptor_pb2`` + ``message_factory`` — no generated code, no protoc, and no hand parsing
of the wire format. Field numbers are facts of the format; fields not listed here are skipped by the parser
(binary) or ignored (text, with ``allow_unknown_field``).
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
T = {"string": F.TYPE_STRING, "int64": F.TYPE_INT64, "int32": F.TYPE_INT32, "uint32": F.TYPE_UINT32,
     "uint64": F.TYPE_UINT64, "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE, "bool": F.TYPE_BOOL,
     "bytes": F.TYPE_BYTES}

V1_LAYER_TYPES = {"NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
                  "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
                  "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9,
                  "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13,
                  "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29, "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34,
                  "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27,
                  "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23,
                  "WINDOW_DATA": 24, "THRESHOLD": 31}

ENUMS = {
    "V1LayerParameter.LayerType": V1_LAYER_TYPES,
    "PoolingParameter.PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    "V0LayerParameter.PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    "LRNParameter.NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    "PoolingParameter.RoundMode": {"CEIL": 0, "FLOOR": 1},
}

# message -> [(name, number, type, label, default)]; type is a scalar name, ".Msg" or "enum:Name"
MESSAGES = {
    "BlobShape": [("dim", 1, "int64", REP, None)],
    "BlobProto": [("shape", 7, ".BlobShape", OPT, None), ("data", 5, "float", REP, None),
                  ("diff", 6, "float", REP, None), ("double_data", 8, "double", REP, None),
                  ("double_diff", 9, "double", REP, None), ("num", 1, "int64", OPT, None),
                  ("channels", 2, "int64", OPT, None), ("height", 3, "int64", OPT, None),
                  ("width", 4, "int64", OPT, None)],
    "NetParameter": [("name", 1, "string", OPT, None), ("input", 3, "string", REP, None),
                     ("input_shape", 8, ".BlobShape", REP, None), ("input_dim", 4, "int64", REP, None),
                     ("force_backward", 5, "bool", OPT, None), ("debug_info", 7, "bool", OPT, None),
                     ("layer", 100, ".LayerParameter", REP, None), ("layers", 2, ".V1LayerParameter", REP, None)],
    "LayerParameter": [("name", 1, "string", OPT, None), ("type", 2, "string", OPT, None),
                       ("bottom", 3, "string", REP, None), ("top", 4, "string", REP, None),
                       ("blobs", 7, ".BlobProto", REP, None),
                       ("convolution_param", 106, ".ConvolutionParameter", OPT, None),
                       ("dropout_param", 108, ".DropoutParameter", OPT, None),
                       ("inner_product_param", 117, ".InnerProductParameter", OPT, None),
                       ("input_param", 143, ".InputParameter", OPT, None),
                       ("lrn_param", 118, ".LRNParameter", OPT, None),
                       ("pooling_param", 121, ".PoolingParameter", OPT, None),
                       ("relu_param", 123, ".ReLUParameter", OPT, None)],
    "ReLUParameter": [("negative_slope", 1, "float", OPT, 0.0)],
    "InputParameter": [("shape", 1, ".BlobShape", REP, None)],
    "DropoutParameter": [("dropout_ratio", 1, "float", OPT, 0.5)],
    "ConvolutionParameter": [("num_output", 1, "uint32", OPT, None), ("bias_term", 2, "bool", OPT, True),
                             ("pad", 3, "uint32", REP, None), ("kernel_size", 4, "uint32", REP, None),
                             ("stride", 6, "uint32", REP, None), ("dilation", 18, "uint32", REP, None),
                             ("pad_h", 9, "uint32", OPT, None), ("pad_w", 10, "uint32", OPT, None),
                             ("kernel_h", 11, "uint32", OPT, None), ("kernel_w", 12, "uint32", OPT, None),
                             ("stride_h", 13, "uint32", OPT, None), ("stride_w", 14, "uint32", OPT, None),
                             ("group", 5, "uint32", OPT, 1), ("axis", 16, "int32", OPT, 1)],
    "PoolingParameter": [("pool", 1, "enum:PoolingParameter.PoolMethod", OPT, None),
                         ("pad", 4, "uint32", OPT, None), ("pad_h", 9, "uint32", OPT, None),
                         ("pad_w", 10, "uint32", OPT, None), ("kernel_size", 2, "uint32", OPT, None),
                         ("kernel_h", 5, "uint32", OPT, None), ("kernel_w", 6, "uint32", OPT, None),
                         ("stride", 3, "uint32", OPT, 1), ("stride_h", 7, "uint32", OPT, None),
                         ("stride_w", 8, "uint32", OPT, None), ("global_pooling", 12, "bool", OPT, None),
                         ("round_mode", 13, "enum:PoolingParameter.RoundMode", OPT, None)],
    "LRNParameter": [("local_size", 1, "uint32", OPT, 5), ("alpha", 2, "float", OPT, 1.0),
                     ("beta", 3, "float", OPT, 0.75),
                     ("norm_region", 4, "enum:LRNParameter.NormRegion", OPT, None), ("k", 5, "float", OPT, 1.0)],
    "InnerProductParameter": [("num_output", 1, "uint32", OPT, None), ("bias_term", 2, "bool", OPT, True),
                              ("axis", 5, "int32", OPT, 1), ("transpose", 6, "bool", OPT, None)],
    "V1LayerParameter": [("bottom", 2, "string", REP, None), ("top", 3, "string", REP, None),
                         ("name", 4, "string", OPT, None),
                         ("type", 5, "enum:V1LayerParameter.LayerType", OPT, None),
                         ("blobs", 6, ".BlobProto", REP, None), ("blobs_lr", 7, "float", REP, None),
                         ("weight_decay", 8, "float", REP, None),
                         ("convolution_param", 10, ".ConvolutionParameter", OPT, None),
                         ("dropout_param", 12, ".DropoutParameter", OPT, None),
                         ("inner_product_param", 17, ".InnerProductParameter", OPT, None),
                         ("lrn_param", 18, ".LRNParameter", OPT, None),
                         ("pooling_param", 19, ".PoolingParameter", OPT, None),
                         ("relu_param", 30, ".ReLUParameter", OPT, None),
                         ("layer", 1, ".V0LayerParameter", OPT, None)],
    "V0LayerParameter": [("name", 1, "string", OPT, None), ("type", 2, "string", OPT, None),
                         ("num_output", 3, "uint32", OPT, None), ("biasterm", 4, "bool", OPT, True),
                         ("pad", 7, "uint32", OPT, 0), ("kernelsize", 8, "uint32", OPT, None),
                         ("group", 9, "uint32", OPT, 1), ("stride", 10, "uint32", OPT, 1),
                         ("pool", 11, "enum:V0LayerParameter.PoolMethod", OPT, None),
                         ("dropout_ratio", 12, "float", OPT, 0.5), ("local_size", 13, "uint32", OPT, 5),
                         ("alpha", 14, "float", OPT, 1.0), ("beta", 15, "float", OPT, 0.75),
                         ("k", 22, "float", OPT, 1.0), ("blobs", 50, ".BlobProto", REP, None)],
}
PACKED = {("BlobShape", "dim"), ("BlobProto", "data"), ("BlobProto", "diff"), ("BlobProto", "double_data"),
          ("BlobProto", "double_diff")}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="tfrestore_caffe_subset.proto", package="caffe", syntax="proto2")
    for msg_name, fields in MESSAGES.items():
        msg = fd.message_type.add(name=msg_name)
        for enum_key, values in ENUMS.items():
            owner, ename = enum_key.split(".")
            if owner == msg_name:
                e = msg.enum_type.add(name=ename)
                for k, v in values.items():
                    e.value.add(name=k, number=v)
        for name, number, ftype, label, default in fields:
            f = msg.field.add(name=name, number=number, label=label)
            if ftype.startswith("."):
                f.type, f.type_name = F.TYPE_MESSAGE, ".caffe" + ftype
            elif ftype.startswith("enum:"):
                f.type, f.type_name = F.TYPE_ENUM, ".caffe." + ftype[5:]
            else:
                f.type = T[ftype]
            if default is not None:
                f.default_value = ("true" if default else "false") if isinstance(default, bool) else str(default)
            if (msg_name, name) in PACKED:
                f.options.packed = True
    return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _cls(name):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"caffe.{name}"))


NetParameter = _cls("NetParameter")
LayerParameter = _cls("LayerParameter")
V1LayerParameter = _cls("V1LayerParameter")
BlobProto = _cls("BlobProto")
BlobShape = _cls("BlobShape")
