import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_innovator.output_buffer import OutputBuffer


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=64),
    appends=st.lists(st.binary(max_size=100), max_size=30),
    data=st.data(),
)
def test_read_returns_what_a_full_copy_holds(capacity: int, appends: list[bytes], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "out.log"
        buffer = OutputBuffer(log_path, capacity)
        full_copy = b""
        for chunk in appends:
            buffer.append(chunk)
            full_copy += chunk
            since = data.draw(st.integers(0, len(full_copy)), label="since")
            max_bytes = data.draw(st.integers(1, 200), label="max_bytes")
            assert buffer.read(since, max_bytes) == (
                full_copy[since : since + max_bytes],
                since + len(full_copy[since : since + max_bytes]),
            )
        assert buffer.end == len(full_copy)
        for since in range(len(full_copy) + 1):
            assert buffer.read(since, len(full_copy) + 1)[0] == full_copy[since:]
        buffer.close()
        assert log_path.read_bytes() == full_copy


def test_old_offsets_are_read_back_from_the_log(tmp_path: Path) -> None:
    buffer = OutputBuffer(tmp_path / "out.log", capacity=8)
    buffer.append(b"0123456789")
    buffer.append(b"abcdefghij")
    assert buffer.window_start == 12
    assert buffer.read(0, 4) == (b"0123", 4)  # only on disk
    assert buffer.read(8, 8) == (b"89abcdef", 16)  # straddles the window
    assert buffer.read(12) == (b"cdefghij", 20)  # in memory
    assert buffer.read(20) == (b"", 20)


def test_a_single_append_larger_than_the_window(tmp_path: Path) -> None:
    buffer = OutputBuffer(tmp_path / "out.log", capacity=4)
    buffer.append(b"abc")
    buffer.append(b"0123456789")
    assert buffer.read(9) == (b"6789", 13)
    assert buffer.read(0) == (b"abc0123456789", 13)


@pytest.mark.parametrize("since", [-1, 6])
def test_offsets_outside_the_output_are_refused(tmp_path: Path, since: int) -> None:
    buffer = OutputBuffer(tmp_path / "out.log")
    buffer.append(b"hello")
    with pytest.raises(ValueError, match=r"offset .* between 0 and 5"):
        buffer.read(since)


def test_bad_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"capacity must be a positive"):
        OutputBuffer(tmp_path / "a.log", capacity=0)
    buffer = OutputBuffer(tmp_path / "b.log")
    with pytest.raises(ValueError, match=r"max_bytes must be positive"):
        buffer.read(0, 0)


def test_reading_a_closed_buffer_names_its_log(tmp_path: Path) -> None:
    buffer = OutputBuffer(tmp_path / "out.log")
    buffer.append(b"kept on disk")
    buffer.close()
    buffer.close()  # closing twice is harmless
    with pytest.raises(ValueError, match=r"out.log is closed"):
        buffer.read(0)
    assert (tmp_path / "out.log").read_bytes() == b"kept on disk"
