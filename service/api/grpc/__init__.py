"""The gRPC edge: Triton's ``inference.GRPCInferenceService`` over the same data plane as HTTP."""

from service.api.grpc.server import GrpcServer

__all__ = ("GrpcServer",)
