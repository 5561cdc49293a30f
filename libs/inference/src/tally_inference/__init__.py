"""Sliced detection through Triton: slicing, batching, decoding and merging."""

from tally_inference._boxes import batched_nms, iou_matrix, nms
from tally_inference._decode import SliceDetections, decode_slice
from tally_inference._detector import (
    LABELS,
    CuttingModel,
    Detection,
    DetectionResult,
    DetectParams,
    InferenceModel,
    SlicedDetector,
    SliceResult,
    cut_batch,
    cut_into,
    decode_batch,
    merge_detections,
)
from tally_inference._formats import FORMATS, LAYOUTS, Layout, ModelFormat, layout_of
from tally_inference._image import (
    ImageError,
    ImageErrorCode,
    ImageInfo,
    Reduced,
    decode_checked_image,
    decode_image,
    decode_reduced,
    decode_upright,
    inspect_image,
)
from tally_inference._metrics import ImageEval, average_precision, count_error
from tally_inference._onnx_check import ModelCheckError, ModelGraph, check_model
from tally_inference._slicing import Box, SliceParams, plan_slices
from tally_inference._triton import MODEL_NAME, InferenceError, SharedMemoryMode, TritonModel

__all__ = [
    "FORMATS",
    "LABELS",
    "LAYOUTS",
    "MODEL_NAME",
    "Box",
    "CuttingModel",
    "DetectParams",
    "Detection",
    "DetectionResult",
    "ImageError",
    "ImageErrorCode",
    "ImageEval",
    "ImageInfo",
    "InferenceError",
    "InferenceModel",
    "Layout",
    "ModelCheckError",
    "ModelFormat",
    "ModelGraph",
    "Reduced",
    "SharedMemoryMode",
    "SliceDetections",
    "SliceParams",
    "SliceResult",
    "SlicedDetector",
    "TritonModel",
    "average_precision",
    "batched_nms",
    "check_model",
    "count_error",
    "cut_batch",
    "cut_into",
    "decode_batch",
    "decode_checked_image",
    "decode_image",
    "decode_reduced",
    "decode_slice",
    "decode_upright",
    "inspect_image",
    "iou_matrix",
    "layout_of",
    "merge_detections",
    "nms",
    "plan_slices",
]
