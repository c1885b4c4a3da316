"""char -> token mapping: hand-written cases, BOS/gap/mid-token policy, property tests.

The property tests compare ``char_to_token`` over the tokenizer's offset mapping with an
independent reference that rebuilds each token's span from the token strings alone (byte-level
BPE: the bytes behind each token; WordPiece: the word piece text found left to right).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
from archs import tiny_tokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

from plip_nn.positions import PositionError, TokenPositions, char_to_token, locate

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "plip_nn" / "data" / "model"

CODE_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " \n\t_()[]{}<>:;,.=+-*/#!&|'\"`@%^~?\\äöüßπλ→"
)
CODE_TEXT = st.text(alphabet=CODE_ALPHABET, min_size=1, max_size=60)


@functools.cache
def wordpiece_tokenizer():
    """A WordPiece tokenizer with a Whitespace pre-tokenizer (drops spaces), trained in code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=200))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=500,
        special_tokens=["[UNK]", "[CLS]"],
        initial_alphabet=list(CODE_ALPHABET),
    )
    text = ["def add(a, b):\n    return a + b\n", "fn add(a: i32) -> i32 { a }\n#[test]\n"] * 20
    # Every char also as a word-continuing piece ("##c"), so no random text becomes [UNK].
    text += [c * 3 for c in CODE_ALPHABET if not c.isspace()]
    tok.train_from_iterator(text, trainer)
    # A BOS-like special token in front, to exercise the BOS policy.
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", tok.token_to_id("[CLS]"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="[CLS]")


@functools.cache
def embedded_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(EMBEDDED_DIR)


def _byte_level_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """Reference spans for byte-level BPE: cumulative bytes behind each token -> chars."""
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    assert len(alphabet) == 256
    # GPT-2's byte <-> unicode table, rebuilt independently of the tokenizer.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    to_byte = {chr(c): b for b, c in zip(bs, cs, strict=True)}
    data = text.encode("utf-8")
    char_of_byte = []
    for i, ch in enumerate(text):
        char_of_byte += [i] * len(ch.encode("utf-8"))
    char_of_byte.append(len(text))
    ids = tokenizer(text)["input_ids"]
    special = set(tokenizer.all_special_ids)
    spans, cursor = [], 0
    for tid in ids:
        if tid in special:
            spans.append((0, 0))
            continue
        piece = bytes(to_byte[c] for c in tokenizer.convert_ids_to_tokens(tid))
        assert data[cursor : cursor + len(piece)] == piece
        start_char = char_of_byte[cursor]
        cursor += len(piece)
        end_char = char_of_byte[cursor - 1] + 1
        spans.append((start_char, end_char))
    assert cursor == len(data)
    return spans


def _wordpiece_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """Reference spans for WordPiece: each piece found left to right in the text."""
    ids = tokenizer(text)["input_ids"]
    spans, cursor = [], 0
    for tid in ids:
        tok = tokenizer.convert_ids_to_tokens(tid)
        assert tok != tokenizer.unk_token, f"reference cannot place [UNK] in {text!r}"
        if tid in tokenizer.all_special_ids:
            spans.append((0, 0))
            continue
        piece = tok[2:] if tok.startswith("##") else tok
        start = text.index(piece, cursor)
        assert text[cursor:start].isspace() or start == cursor
        spans.append((start, start + len(piece)))
        cursor = start + len(piece)
    return spans


def _check_round_trip(tokenizer, reference, text: str) -> None:
    enc = tokenizer(text, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    spans = reference(tokenizer, text)
    for pos in range(len(text)):
        covering = [i for i, (s, e) in enumerate(spans) if s <= pos < e]
        if covering:
            expected = covering[0]
        else:
            assert text[pos].isspace(), (text, pos)
            later = [i for i, (s, e) in enumerate(spans) if e > s and s > pos]
            if not later:
                with pytest.raises(PositionError, match="trailing whitespace"):
                    char_to_token(offsets, pos, text_len=len(text), text=text)
                continue
            expected = later[0]
        assert char_to_token(offsets, pos, text_len=len(text), text=text) == expected, (text, pos)


@settings(max_examples=60, deadline=None)
@given(CODE_TEXT)
def test_round_trip_tiny_byte_level_bpe(text: str) -> None:
    _check_round_trip(tiny_tokenizer(), _byte_level_spans, text)


@settings(max_examples=60, deadline=None)
@given(CODE_TEXT)
def test_round_trip_wordpiece_whitespace(text: str) -> None:
    _check_round_trip(wordpiece_tokenizer(), _wordpiece_spans, text)


@settings(max_examples=40, deadline=None)
@given(CODE_TEXT)
def test_round_trip_embedded_tokenizer(text: str) -> None:
    _check_round_trip(embedded_tokenizer(), _byte_level_spans, text)


# ---------------------------------------------------------------------------------------------
# Hand-written cases
# ---------------------------------------------------------------------------------------------

OFFSETS = [(0, 0), (0, 3), (3, 7), (8, 10), (10, 11)]  # BOS, "def", " add", gap at 7, "(a", ")"


def test_char_to_token_hand_cases() -> None:
    text = "def add (a)"
    assert char_to_token(OFFSETS, 0, text_len=11) == 1
    assert char_to_token(OFFSETS, 2, text_len=11) == 1
    assert char_to_token(OFFSETS, 3, text_len=11) == 2  # the space belongs to " add"
    assert char_to_token(OFFSETS, 4, text_len=11) == 2
    assert char_to_token(OFFSETS, 9, text_len=11) == 3  # mid-token: containing token
    assert char_to_token(OFFSETS, 10, text_len=11) == 4
    # A whitespace gap maps to the next token; without the text it cannot be told apart.
    assert char_to_token(OFFSETS, 7, text_len=11, text=text) == 3
    with pytest.raises(PositionError, match="covered by no token"):
        char_to_token(OFFSETS, 7, text_len=11)


def test_char_to_token_errors_name_value_and_length() -> None:
    with pytest.raises(PositionError, match=r"char_pos=11 .*length 11"):
        char_to_token(OFFSETS, 11, text_len=11)
    with pytest.raises(PositionError, match=r"char_pos=-1"):
        char_to_token(OFFSETS, -1, text_len=11)
    with pytest.raises(PositionError, match="must be an int"):
        char_to_token(OFFSETS, 1.0, text_len=11)  # type: ignore[arg-type]
    with pytest.raises(PositionError, match=r"\('x'\) is covered by no token"):
        char_to_token([(0, 1)], 1, text_len=2, text="ax")
    with pytest.raises(PositionError, match="trailing whitespace"):
        char_to_token([(0, 1)], 1, text_len=2, text="a ")


def test_locate_tiny_tokenizer_hand_checked() -> None:
    tok = tiny_tokenizer()
    code = 'def add(a, b):\n    """\n    >>> add(2, 3)\n    5\n    """\n    return a + b'
    pos = locate(tok, code, 27, [0, 4, 8, 11], sample_id="s1")
    pieces = tok.convert_ids_to_tokens(list(pos.input_ids))
    # Hand-checked against the token strings: 'def', 'Ġadd', '(', 'a', ',', 'Ġb', ... 'Ġ>>>'.
    assert pieces[pos.source] == "Ġ>>>"
    assert [pieces[t] for t in pos.targets] == ["def", "Ġadd", "a", "Ġb"]
    assert pos.targets == (0, 1, 3, 5)
    assert pos.bos_offset == 0
    assert pos.mid_token_chars == ()
    assert pos.dropped_targets == ()


def test_locate_bos_policy_shifts_by_one() -> None:
    tok = wordpiece_tokenizer()
    code = "fn add(a: i32) -> i32 { a }\n#[test]"
    pos = locate(tok, code, 28, [0, 3, 7], sample_id="bos")
    pieces = tok.convert_ids_to_tokens(list(pos.input_ids))
    assert pieces[0] == "[CLS]" and pos.bos_offset == 1
    assert [pieces[t] for t in pos.targets] == ["fn", "add", "a"]
    assert pos.targets == (1, 2, 4)  # "fn"=1 after BOS, "add"=2, "("=3, "a"=4
    assert pieces[pos.source] == "#["


def test_locate_mid_token_and_dropped_target(caplog: pytest.LogCaptureFixture) -> None:
    tok = tiny_tokenizer()
    code = "def add(a, b):\n    return a + b"
    # char 5 ('d' inside 'Ġadd') starts mid-token; char 1 shares the source token 'def'.
    with caplog.at_level(logging.WARNING, logger="plip_nn.positions"):
        pos = locate(tok, code, 0, [1, 5], sample_id="mid")
    assert pos.source == 0
    assert pos.targets == (1,)
    assert pos.mid_token_chars == (1, 5)
    assert pos.dropped_targets == (1,)
    assert "sample mid" in caplog.text and "dropped" in caplog.text


def test_locate_errors_name_sample() -> None:
    tok = tiny_tokenizer()
    with pytest.raises(PositionError, match=r"sample s9: target char_pos=99 .*length 5"):
        locate(tok, "def f", 0, [99], sample_id="s9")
    with pytest.raises(PositionError, match=r"sample s9: marker char_pos=-2"):
        locate(tok, "def f", -2, [4], sample_id="s9")
    with pytest.raises(PositionError, match="every target falls in the source token"):
        locate(tok, "def f", 0, [1], sample_id="s9")
    with pytest.raises(PositionError, match="no target_char_positions"):
        locate(tok, "def f", 0, [], sample_id="s9")


def test_token_positions_validates() -> None:
    with pytest.raises(PositionError, match="sorted and unique"):
        TokenPositions(
            input_ids=(1, 2, 3),
            source=2,
            targets=(1, 0),
            bos_offset=0,
            mid_token_chars=(),
            dropped_targets=(),
        )
    with pytest.raises(PositionError, match="exclude source"):
        TokenPositions(
            input_ids=(1, 2, 3),
            source=2,
            targets=(2,),
            bos_offset=0,
            mid_token_chars=(),
            dropped_targets=(),
        )
