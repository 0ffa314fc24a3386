"""Schemathesis hooks for stephost's API fuzzing (host/tests/api_fuzz.rs).

`PUT /v1/steps/{name}` takes a component as `application/wasm`, which
schemathesis cannot generate by itself: give it arbitrary bytes, and bytes
behind the component preamble (magic, version 0x0d, layer 1), so that the
upload path is fuzzed past the first four bytes of validation.
"""

import schemathesis
from hypothesis import strategies as st

COMPONENT_PREAMBLE = b"\x00asm\x0d\x00\x01\x00"

schemathesis.openapi.media_type(
    "application/wasm",
    st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=2048).map(lambda rest: COMPONENT_PREAMBLE + rest),
    ),
)
