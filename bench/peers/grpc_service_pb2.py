"""Alias of tritonclient's KServe v2 protobuf module under its generated name.

tritonclient.grpc.service_pb2 is generated from `grpc_service.proto`, so its message classes
say `__module__ == "grpc_service_pb2"`. Ray Serve's gRPC proxy pickles each request to hand it
to a replica, and pickle finds a class by its module: this file (on the PYTHONPATH that
ray_server.py gives Ray's workers) makes that module importable.
"""
from tritonclient.grpc.service_pb2 import *  # noqa: F401,F403
