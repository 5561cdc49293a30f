import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_PROCESSING: _ClassVar[JobStatus]
    JOB_STATUS_COMPLETED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_PROCESSING: JobStatus
JOB_STATUS_COMPLETED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELLED: JobStatus

class JobRef(_message.Message):
    __slots__ = ("tenant_id", "session_id", "job_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    session_id: str
    job_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., session_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class SliceBox(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: int
    y1: int
    x2: int
    y2: int
    def __init__(self, x1: _Optional[int] = ..., y1: _Optional[int] = ..., x2: _Optional[int] = ..., y2: _Optional[int] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("model_id", "name", "version", "format", "triton_name", "input_name", "output_name", "labels", "max_batch")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TRITON_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    name: str
    version: int
    format: str
    triton_name: str
    input_name: str
    output_name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    max_batch: int
    def __init__(self, model_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., format: _Optional[str] = ..., triton_name: _Optional[str] = ..., input_name: _Optional[str] = ..., output_name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., max_batch: _Optional[int] = ...) -> None: ...

class DetectionParams(_message.Message):
    __slots__ = ("slice_size", "overlap", "confidence", "model")
    SLICE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    slice_size: int
    overlap: float
    confidence: float
    model: ModelRef
    def __init__(self, slice_size: _Optional[int] = ..., overlap: _Optional[float] = ..., confidence: _Optional[float] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class PhotoUploaded(_message.Message):
    __slots__ = ("job", "image_id", "filename", "object_key", "width", "height", "params", "uploaded_at")
    JOB_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_AT_FIELD_NUMBER: _ClassVar[int]
    job: JobRef
    image_id: str
    filename: str
    object_key: str
    width: int
    height: int
    params: DetectionParams
    uploaded_at: _timestamp_pb2.Timestamp
    def __init__(self, job: _Optional[_Union[JobRef, _Mapping]] = ..., image_id: _Optional[str] = ..., filename: _Optional[str] = ..., object_key: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., params: _Optional[_Union[DetectionParams, _Mapping]] = ..., uploaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DetectChunk(_message.Message):
    __slots__ = ("job", "chunk_index", "chunk_count", "attempt", "object_key", "width", "height", "slices", "slice_size", "confidence", "total_slices", "model")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    SLICE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SLICES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    job: JobRef
    chunk_index: int
    chunk_count: int
    attempt: int
    object_key: str
    width: int
    height: int
    slices: _containers.RepeatedCompositeFieldContainer[SliceBox]
    slice_size: int
    confidence: float
    total_slices: int
    model: ModelRef
    def __init__(self, job: _Optional[_Union[JobRef, _Mapping]] = ..., chunk_index: _Optional[int] = ..., chunk_count: _Optional[int] = ..., attempt: _Optional[int] = ..., object_key: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., slices: _Optional[_Iterable[_Union[SliceBox, _Mapping]]] = ..., slice_size: _Optional[int] = ..., confidence: _Optional[float] = ..., total_slices: _Optional[int] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2", "score", "label")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    label: str
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ..., score: _Optional[float] = ..., label: _Optional[str] = ...) -> None: ...

class SliceDetections(_message.Message):
    __slots__ = ("slice", "detections")
    SLICE_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    slice: SliceBox
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    def __init__(self, slice: _Optional[_Union[SliceBox, _Mapping]] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ...) -> None: ...

class ChunkFailure(_message.Message):
    __slots__ = ("code", "message", "retryable")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    retryable: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class ChunkResult(_message.Message):
    __slots__ = ("job", "chunk_index", "attempt", "detections", "failure", "inference_seconds", "detector_id")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    job: JobRef
    chunk_index: int
    attempt: int
    detections: ChunkDetections
    failure: ChunkFailure
    inference_seconds: float
    detector_id: str
    def __init__(self, job: _Optional[_Union[JobRef, _Mapping]] = ..., chunk_index: _Optional[int] = ..., attempt: _Optional[int] = ..., detections: _Optional[_Union[ChunkDetections, _Mapping]] = ..., failure: _Optional[_Union[ChunkFailure, _Mapping]] = ..., inference_seconds: _Optional[float] = ..., detector_id: _Optional[str] = ...) -> None: ...

class ChunkDetections(_message.Message):
    __slots__ = ("slices",)
    SLICES_FIELD_NUMBER: _ClassVar[int]
    slices: _containers.RepeatedCompositeFieldContainer[SliceDetections]
    def __init__(self, slices: _Optional[_Iterable[_Union[SliceDetections, _Mapping]]] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("job", "reason", "requested_at")
    JOB_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    job: JobRef
    reason: str
    requested_at: _timestamp_pb2.Timestamp
    def __init__(self, job: _Optional[_Union[JobRef, _Mapping]] = ..., reason: _Optional[str] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("event_id", "job", "sequence", "emitted_at", "source", "queued", "planned", "started", "progress", "completed", "failed", "cancelled", "deleted")
    class Queued(_message.Message):
        __slots__ = ("image_id", "filename", "width", "height")
        IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
        FILENAME_FIELD_NUMBER: _ClassVar[int]
        WIDTH_FIELD_NUMBER: _ClassVar[int]
        HEIGHT_FIELD_NUMBER: _ClassVar[int]
        image_id: str
        filename: str
        width: int
        height: int
        def __init__(self, image_id: _Optional[str] = ..., filename: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...
    class Planned(_message.Message):
        __slots__ = ("total_slices", "chunk_count")
        TOTAL_SLICES_FIELD_NUMBER: _ClassVar[int]
        CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
        total_slices: int
        chunk_count: int
        def __init__(self, total_slices: _Optional[int] = ..., chunk_count: _Optional[int] = ...) -> None: ...
    class Started(_message.Message):
        __slots__ = ("chunk_index",)
        CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
        chunk_index: int
        def __init__(self, chunk_index: _Optional[int] = ...) -> None: ...
    class Progress(_message.Message):
        __slots__ = ("slices_done", "total_slices")
        SLICES_DONE_FIELD_NUMBER: _ClassVar[int]
        TOTAL_SLICES_FIELD_NUMBER: _ClassVar[int]
        slices_done: int
        total_slices: int
        def __init__(self, slices_done: _Optional[int] = ..., total_slices: _Optional[int] = ...) -> None: ...
    class Completed(_message.Message):
        __slots__ = ("counts", "detections", "result_key", "warnings")
        class CountsEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: int
            def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
        COUNTS_FIELD_NUMBER: _ClassVar[int]
        DETECTIONS_FIELD_NUMBER: _ClassVar[int]
        RESULT_KEY_FIELD_NUMBER: _ClassVar[int]
        WARNINGS_FIELD_NUMBER: _ClassVar[int]
        counts: _containers.ScalarMap[str, int]
        detections: int
        result_key: str
        warnings: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, counts: _Optional[_Mapping[str, int]] = ..., detections: _Optional[int] = ..., result_key: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...
    class Failed(_message.Message):
        __slots__ = ("code", "message")
        CODE_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_FIELD_NUMBER: _ClassVar[int]
        code: str
        message: str
        def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
    class Cancelled(_message.Message):
        __slots__ = ("reason",)
        REASON_FIELD_NUMBER: _ClassVar[int]
        reason: str
        def __init__(self, reason: _Optional[str] = ...) -> None: ...
    class Deleted(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    job: JobRef
    sequence: int
    emitted_at: _timestamp_pb2.Timestamp
    source: str
    queued: JobEvent.Queued
    planned: JobEvent.Planned
    started: JobEvent.Started
    progress: JobEvent.Progress
    completed: JobEvent.Completed
    failed: JobEvent.Failed
    cancelled: JobEvent.Cancelled
    deleted: JobEvent.Deleted
    def __init__(self, event_id: _Optional[str] = ..., job: _Optional[_Union[JobRef, _Mapping]] = ..., sequence: _Optional[int] = ..., emitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., queued: _Optional[_Union[JobEvent.Queued, _Mapping]] = ..., planned: _Optional[_Union[JobEvent.Planned, _Mapping]] = ..., started: _Optional[_Union[JobEvent.Started, _Mapping]] = ..., progress: _Optional[_Union[JobEvent.Progress, _Mapping]] = ..., completed: _Optional[_Union[JobEvent.Completed, _Mapping]] = ..., failed: _Optional[_Union[JobEvent.Failed, _Mapping]] = ..., cancelled: _Optional[_Union[JobEvent.Cancelled, _Mapping]] = ..., deleted: _Optional[_Union[JobEvent.Deleted, _Mapping]] = ...) -> None: ...

class SessionWait(_message.Message):
    __slots__ = ("session", "estimated_at", "wait", "jobs")
    class Wait(_message.Message):
        __slots__ = ("seconds", "low", "high", "reason")
        SECONDS_FIELD_NUMBER: _ClassVar[int]
        LOW_FIELD_NUMBER: _ClassVar[int]
        HIGH_FIELD_NUMBER: _ClassVar[int]
        REASON_FIELD_NUMBER: _ClassVar[int]
        seconds: float
        low: float
        high: float
        reason: str
        def __init__(self, seconds: _Optional[float] = ..., low: _Optional[float] = ..., high: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...
    class JobWait(_message.Message):
        __slots__ = ("job_id", "wait")
        JOB_ID_FIELD_NUMBER: _ClassVar[int]
        WAIT_FIELD_NUMBER: _ClassVar[int]
        job_id: str
        wait: SessionWait.Wait
        def __init__(self, job_id: _Optional[str] = ..., wait: _Optional[_Union[SessionWait.Wait, _Mapping]] = ...) -> None: ...
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_AT_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    session: JobRef
    estimated_at: _timestamp_pb2.Timestamp
    wait: SessionWait.Wait
    jobs: _containers.RepeatedCompositeFieldContainer[SessionWait.JobWait]
    def __init__(self, session: _Optional[_Union[JobRef, _Mapping]] = ..., estimated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., wait: _Optional[_Union[SessionWait.Wait, _Mapping]] = ..., jobs: _Optional[_Iterable[_Union[SessionWait.JobWait, _Mapping]]] = ...) -> None: ...
