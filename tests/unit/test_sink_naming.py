from harness_audit.clock import iso
from harness_audit.sink import PartBuffer, line_identities, object_name


def test_object_names_are_deterministic_and_sort_by_time():
    start, end = 1_749_560_400_123, 1_749_564_000_000
    name = object_name("harness/audit", start, end, 3)
    assert name == (
        "harness/audit/2025/06/10/harness-audit-20250610T130000123Z-20250610T140000000Z-0003.jsonl"
    )
    assert object_name("harness/audit", start, end, 3) == name
    names = [
        object_name("p", start, end, 2),
        object_name("p", start, end, 10),
        object_name("p", end - 600_000, end + 3_600_000, 1),
    ]
    assert names == sorted(names)


def test_empty_prefix_writes_at_bucket_root():
    assert object_name("", 0, 1, 1).startswith("1970/01/01/harness-audit-")


def test_iso():
    assert iso(1_749_560_400_123) == "2025-06-10T13:00:00.123Z"


def test_buffer_without_known_ids():
    buffer = PartBuffer()
    for number in range(4):
        buffer.add(f"line{number}".encode(), f"id{number}", number)
    assert buffer.size == 24 and len(buffer) == 4
    kept = buffer.without({"id1": 1, "id3": 3})
    assert kept.data() == b"line0\nline2\n"
    assert kept.ids == [("id0", 0), ("id2", 2)]
    assert kept.size == 12
    assert buffer.data() == b"line0\nline1\nline2\nline3\n"


def test_a_new_buffer_is_empty():
    buffer = PartBuffer()
    assert buffer.data() == b"" and len(buffer) == 0 and buffer.size == 0


def test_ids_read_back_from_either_layout_and_bad_lines_ignored():
    data = b'{"auditId":"a","timestamp":5}\n{"auditEventId":"b","auditEventTime":"6"}\n\nnot json\n'
    assert dict(line_identities(data, fallback_ms=0)) == {"a": 5, "b": 6}
