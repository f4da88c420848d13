"""Wire bodies <-> numpy for the inference routes: V2 (JSON + binary tensor extension) and the simple predict.

Framework-free: adapters pass raw bytes and header values in and send the returned bytes out.
"""

from service.codecs.v1 import decode_predict_request, encode_predict_response
from service.codecs.v2 import (
    DecodedInferRequest,
    DecodedTensor,
    OutputRequest,
    decode_infer_request,
    encode_infer_response,
)

__all__ = (
    "DecodedInferRequest",
    "DecodedTensor",
    "OutputRequest",
    "decode_infer_request",
    "decode_predict_request",
    "encode_infer_response",
    "encode_predict_response",
)
