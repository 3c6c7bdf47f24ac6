"""Reading TensorBoard event files back in tests: TFRecord framing (length, masked CRC-32C of
the length, the record, masked CRC of the record) and tensorboardX's Event protobuf."""

import struct

from tensorboardX.proto import event_pb2


def read_events(path: str) -> list[tuple[int, dict]]:
    """(step, {tag: float or the encoded image bytes}) of every summary event of `path` (local
    or remote, score_sde.store.fs)."""
    from score_sde.store import fs

    out = []
    data = fs.path(path).read_bytes()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from("<Q", data, pos)
        record = data[pos + 12 : pos + 12 + n]
        assert len(record) == n, "truncated event file"
        pos += 16 + n
        event = event_pb2.Event.FromString(record)
        if event.HasField("summary"):
            values = {}
            for v in event.summary.value:
                kind = v.WhichOneof("value")
                values[v.tag] = v.simple_value if kind == "simple_value" else v.image
            out.append((event.step, values))
    return out
