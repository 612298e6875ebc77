"""What a NOTIFY carries between replicas (store/hub.py `encode` / `decode`): a small batch
of events travels with its rows and frames on the other side byte for byte as on its
writer; anything larger or unreadable is the bare last seq, which makes the feed read the
log (board_api/feeds.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from board_api.feeds import _frame  # pyright: ignore[reportPrivateUsage]
from store.hub import ROWS_IN_NOTIFY, Batch, EventRow, decode, encode

AT = datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=UTC)


def batch(task: str, first: int, texts: list[str]) -> Batch:
    rows: list[EventRow] = [
        (task, first + i, "message_delta", {"text": t, "n": i, "x": i / 3, "nan": float("nan")}, 1, AT)
        for i, t in enumerate(texts)
    ]
    return Batch(rows)


def test_a_small_batch_crosses_with_its_rows_and_frames_the_same() -> None:
    sent = batch("t_1", 7, ["héllo 👋", 'tab\there "quoted"\nnewline', ""])
    (payload,) = encode([("task:t_1", sent), ("board", "t_1")], origin="abc")
    assert len(payload.split("\n")) == 3  # the text's newline and tab are escaped in the JSON
    notes = decode(payload)
    assert [t for t, _ in notes] == ["!origin", "task:t_1", "board"]
    got = notes[1][1]
    assert isinstance(got, Batch) and str(got) == "9" and got.first == 7
    assert [_frame(*r) for r in got.rows] == [_frame(*r) for r in sent.rows]


def test_a_large_batch_crosses_as_its_last_seq_only() -> None:
    sent = batch("t_2", 1, ["x" * 200] * (ROWS_IN_NOTIFY // 200 + 1))
    (payload,) = encode([("task:t_2", sent)])
    ((topic, got),) = decode(payload)
    assert (topic, got, isinstance(got, Batch)) == ("task:t_2", str(sent), False)


def test_payloads_stay_under_the_limit_in_bytes() -> None:
    # 4 bytes a character: counted in characters, these payloads would be 4 times too big.
    notes: list[tuple[str, str]] = [(f"task:t_{i}", batch(f"t_{i}", 1, ["🙂" * 100] * 5)) for i in range(40)]
    payloads = encode(notes, origin="abc")
    assert len(payloads) > 1
    assert max(len(p.encode()) for p in payloads) <= 8000
    got = [n for p in payloads for n in decode(p) if n[0] != "!origin"]
    assert [t for t, _ in got] == [t for t, _ in notes]
    assert all(isinstance(b, Batch) and b.rows[-1][3]["text"] == "🙂" * 100 for _, b in got)


def test_rows_it_cannot_read_make_a_bare_seq() -> None:
    for rows in (
        "not json",
        "[[1, 2]]",
        '[[4, "k", {}, 1, "t"]]',
        '[[3, "k", {}, 1, "t"], [5, "k", {}, 1, "t"]]',
    ):
        ((_, got),) = decode(f"task:t_3\t5\t{rows}")
        assert (got, isinstance(got, Batch)) == ("5", False), rows
    ((_, ok),) = decode('task:t_3\t5\t[[4, "k", {}, 1, "t"], [5, "k", {}, 1, "t"]]')
    assert isinstance(ok, Batch) and ok.rows[0] == ("t_3", 4, "k", {}, 1, "t")
