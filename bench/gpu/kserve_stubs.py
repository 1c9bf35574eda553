"""The KServe v2 gRPC stubs for the GPU bench, with or without grpcio-tools.

The sidecar's own `stubs.load()` compiles proto/inference/*.proto with grpcio-tools, which
the GPU machines do not have (they have grpcio and protobuf only, and nothing can be
installed there). Pre-generated `_pb2` files would not do either: they check the protobuf
and grpcio versions they were generated for at import time. So `pack.sh` compiles the protos
here into one FileDescriptorSet (`proto/inference.desc`, with --include_imports), and
`load()` builds the message classes from it at run time, and the servicer base, the
`add_..._to_server` function and the client stub from its service descriptor: three
namespaces that stand in for `grpc_service_pb2`, `model_config_pb2` and
`grpc_service_pb2_grpc` for what the sidecar and the bench use.

    pb, config_pb, pb_grpc = kserve_stubs.load()

CONDUIT_BENCH_STUBS=protoc uses the sidecar's stubs.load() (needs grpcio-tools),
=descriptor the descriptor set, =auto (default) the first when grpcio-tools imports.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
DESCRIPTOR_SET = HERE / "proto" / "inference.desc"
SERVICE = "inference.GRPCInferenceService"
FILES = {"pb": "inference/grpc_service.proto", "config_pb": "inference/model_config.proto"}


class StubLoadError(RuntimeError):
    """Neither grpcio-tools nor a usable descriptor set."""


def _message_class(desc):
    try:
        from google.protobuf.message_factory import GetMessageClass  # protobuf >= 4.22
    except ImportError:  # pragma: no cover - older protobuf
        from google.protobuf import message_factory

        cls = message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)
    else:
        cls = GetMessageClass(desc)
    for nested in desc.nested_types:  # as generated code has them (protobuf 3.x classes lack them)
        if not hasattr(cls, nested.name):
            setattr(cls, nested.name, _message_class(nested))
    return cls


def _module(name: str, file_desc) -> types.ModuleType:
    """A stand-in for a generated `_pb2` module: message classes and enums by name."""
    from google.protobuf.internal import enum_type_wrapper

    mod = types.ModuleType(name)
    mod.DESCRIPTOR = file_desc
    for msg_name, desc in file_desc.message_types_by_name.items():
        setattr(mod, msg_name, _message_class(desc))
    for enum_name, desc in file_desc.enum_types_by_name.items():
        setattr(mod, enum_name, enum_type_wrapper.EnumTypeWrapper(desc))
        for value in desc.values:
            setattr(mod, value.name, value.number)
    return mod


def _grpc_module(service_desc) -> types.ModuleType:
    """A stand-in for `grpc_service_pb2_grpc`: Servicer, add_..._to_server, Stub."""
    import grpc

    methods = []
    for m in service_desc.methods:
        methods.append(
            (
                m.name,
                _message_class(m.input_type),
                _message_class(m.output_type),
                m.client_streaming,
                m.server_streaming,
            )
        )
    full = service_desc.full_name

    def unimplemented(name):
        def method(self, request, context):
            context.set_code(grpc.StatusCode.UNIMPLEMENTED)
            context.set_details(f"Method {name} not implemented!")
            raise NotImplementedError(f"Method {name} not implemented!")

        method.__name__ = name
        return method

    servicer = type(
        "GRPCInferenceServiceServicer", (object,), {m[0]: unimplemented(m[0]) for m in methods}
    )

    kinds = {
        (False, False): (grpc.unary_unary_rpc_method_handler, "unary_unary"),
        (False, True): (grpc.unary_stream_rpc_method_handler, "unary_stream"),
        (True, False): (grpc.stream_unary_rpc_method_handler, "stream_unary"),
        (True, True): (grpc.stream_stream_rpc_method_handler, "stream_stream"),
    }

    def add_to_server(impl, server):
        handlers = {}
        for name, req, resp, cs, ss in methods:
            make_handler, _ = kinds[(cs, ss)]
            handlers[name] = make_handler(
                getattr(impl, name),
                request_deserializer=req.FromString,
                response_serializer=resp.SerializeToString,
            )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(full, handlers),))

    class Stub:
        def __init__(self, channel):
            for name, req, resp, cs, ss in methods:
                _, kind = kinds[(cs, ss)]
                setattr(
                    self,
                    name,
                    getattr(channel, kind)(
                        f"/{full}/{name}",
                        request_serializer=req.SerializeToString,
                        response_deserializer=resp.FromString,
                    ),
                )

    mod = types.ModuleType("grpc_service_pb2_grpc")
    mod.GRPCInferenceServiceServicer = servicer
    mod.add_GRPCInferenceServiceServicer_to_server = add_to_server
    mod.GRPCInferenceServiceStub = Stub
    return mod


def load_descriptor(path: Path = DESCRIPTOR_SET):
    """(pb, config_pb, pb_grpc) built from a FileDescriptorSet; raises StubLoadError."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool
    except ImportError as e:
        raise StubLoadError(f"the protobuf package is not importable ({e})") from e
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StubLoadError(f"no descriptor set at {path} ({e}); run bench/gpu/pack.sh") from e
    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:  # protoc writes dependencies first
        pool.AddSerializedFile(f.SerializeToString())
    pb = _module("grpc_service_pb2", pool.FindFileByName(FILES["pb"]))
    config_pb = _module("model_config_pb2", pool.FindFileByName(FILES["config_pb"]))
    pb_grpc = _grpc_module(pool.FindServiceByName(SERVICE))
    return pb, config_pb, pb_grpc


def load():
    """(pb, config_pb, pb_grpc): the sidecar's generated stubs when grpcio-tools is there
    (and CONDUIT_BENCH_STUBS is not `descriptor`), else the descriptor set's stand-ins."""
    mode = os.environ.get("CONDUIT_BENCH_STUBS", "auto")
    if mode not in ("auto", "protoc", "descriptor"):
        raise StubLoadError(f"CONDUIT_BENCH_STUBS={mode!r}: want auto, protoc or descriptor")
    if mode != "descriptor":
        try:
            import grpc_tools  # noqa: F401
        except ImportError:
            if mode == "protoc":
                raise StubLoadError("CONDUIT_BENCH_STUBS=protoc but grpcio-tools is missing")
        else:
            sidecar = str(HERE / "sidecar")
            if sidecar not in sys.path:
                sys.path.insert(0, sidecar)
            import stubs

            return stubs.load()
    return load_descriptor()


def which() -> str:
    """Which stubs load() gives in this Python: 'protoc' or 'descriptor'."""
    mode = os.environ.get("CONDUIT_BENCH_STUBS", "auto")
    if mode == "auto":
        try:
            import grpc_tools  # noqa: F401

            return "protoc"
        except ImportError:
            return "descriptor"
    return mode
