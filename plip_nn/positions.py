"""Character positions -> token positions, through the tokenizer's offset mapping.

Policy (docs/CONTRACT.md, "Token positions"):

* The text is tokenized with the tokenizer's defaults (``add_special_tokens`` as the tokenizer
  does it). Special tokens (BOS, ...) cover no characters; the number of special tokens before
  the first text token is recorded as ``bos_offset`` (1 for a tokenizer that adds BOS, else 0).
  Returned positions are absolute positions in ``input_ids``, so they already include it.
* A character maps to the first token whose span ``[start, end)`` contains it. Byte-level BPE
  may split one multi-byte character into several tokens with the same span: the first wins.
* A character that starts *mid-token* (the token has a non-whitespace character before it) maps
  to the containing token and is reported in ``mid_token_chars``. A token that starts with
  whitespace (``" def"``) does not make ``d`` mid-token.
* A whitespace character covered by no token (tokenizers that drop spaces) maps to the next
  token, the one the whitespace precedes. A non-whitespace character covered by no token is an
  error: the tokenizer dropped it, and no position can be right.
* Source = token of the marker character; targets = tokens of the target characters, sorted and
  deduplicated. A target that falls in the source token is dropped with a warning and listed
  (as a character position) in ``dropped_targets``.
* The scopes' positions (:mod:`plip_nn.scope`) come from character spans too
  (:mod:`plip_nn.codesrc`): the **marker span** is every token that overlaps the marker text
  (``>>>``; ``#[test]`` and its line break), the **identifier targets** every token that
  overlaps an identifier starting at a target character (``def``/``fn``, the name, each
  parameter), and the **signature** every token of the function's signature (the random
  control never draws its keys there). PLIP-rs files work unchanged: they give the chars.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plip_nn.codesrc import (
    function_name_at,
    identifier_span,
    marker_span_chars,
    signature_span,
)
from plip_nn.scope import ROWS, TARGETS, ScopeError

logger = logging.getLogger(__name__)

__all__ = ["PositionError", "TokenPositions", "char_to_token", "locate"]


class PositionError(ValueError):
    """A character position that cannot be mapped to a token."""


@dataclass(frozen=True, kw_only=True)
class TokenPositions:
    """Token positions of one sample in the tokenized text.

    Attributes:
        input_ids: The token ids, special tokens included.
        source: Token position of the marker (query row of the edited edges).
        targets: Token positions of the targets, sorted, deduplicated, source excluded.
        bos_offset: Number of special tokens the tokenizer put before the text (0 or 1 usually).
        mid_token_chars: Marker/target character positions that start inside a token.
        dropped_targets: Target character positions dropped because they lie in the source token.
        marker_span: Tokens of the marker text, sorted; starts at ``source`` (default: it alone).
        identifier_targets: Tokens of the identifiers that start at the target characters,
            sorted, marker tokens excluded (default: ``targets``).
        signature: Tokens of the function's signature, identifier tokens included (default:
            the identifier targets).
        call_at: On a test sample, the call's prediction row: the token before the token that
            holds the first character of the function's name where the test first calls it
            (:func:`plip_nn.codesrc.call_char_pos`); None elsewhere (generation prompts,
            false markers).
        mention_targets: The ``mentions`` targets: the identifier targets plus every token
            that overlaps an earlier mention of the name (``add`` in ``fn test_add``) up to
            the readout row, marker tokens excluded (default: the identifier targets).
    """

    input_ids: tuple[int, ...]
    source: int
    targets: tuple[int, ...]
    bos_offset: int
    mid_token_chars: tuple[int, ...]
    dropped_targets: tuple[int, ...]
    marker_span: tuple[int, ...] = ()
    identifier_targets: tuple[int, ...] = ()
    signature: tuple[int, ...] = ()
    call_at: int | None = None
    mention_targets: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.input_ids)
        if not 0 <= self.source < n:
            raise PositionError(
                f"source={self.source} is outside 0..{n - 1}; recompute with locate()"
            )
        if list(self.targets) != sorted(set(self.targets)):
            raise PositionError(f"targets={self.targets} must be sorted and unique")
        if any(not 0 <= t < n for t in self.targets) or self.source in self.targets:
            raise PositionError(
                f"targets={self.targets} must lie in 0..{n - 1} and exclude source={self.source}"
            )
        span = self.marker_span or (self.source,)
        if span[0] != self.source or list(span) != sorted(set(span)) or span[-1] >= n:
            raise PositionError(
                f"marker_span={span} must be sorted, unique, start at source={self.source} "
                f"and lie in 0..{n - 1}"
            )
        idents = self.identifier_targets or self.targets
        if set(self.targets) - set(idents) or set(idents) & set(span):
            raise PositionError(
                f"identifier_targets={idents} must contain targets={self.targets} and no "
                f"marker token {span}"
            )
        sig = tuple(sorted(set(self.signature) | set(idents)))
        if self.call_at is not None and not (
            isinstance(self.call_at, int) and span[-1] <= self.call_at < n - 1
        ):
            raise PositionError(
                f"call_at={self.call_at!r} must be a row in {span[-1]}..{n - 2}: at or after "
                "the marker's last token, with the name's token after it"
            )
        mentions = tuple(sorted(set(self.mention_targets) | set(idents)))
        if any(not 0 <= t < n for t in mentions) or set(mentions) & set(span):
            raise PositionError(
                f"mention_targets={mentions} must lie in 0..{n - 1} and hold no marker token"
            )
        object.__setattr__(self, "mention_targets", mentions)
        object.__setattr__(self, "marker_span", tuple(span))
        object.__setattr__(self, "identifier_targets", tuple(idents))
        object.__setattr__(self, "signature", sig)

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def predict_at(self) -> int:
        """The prediction position after the marker: the marker span's last token.

        Its next-token distribution is the model's first token after the marker; in a
        generation prompt it is the prompt's last token.
        """
        return self.marker_span[-1]

    @property
    def gold_token(self) -> int | None:
        """The token that holds the first character of the called name (the token after
        :attr:`call_at`); None without a call."""
        return None if self.call_at is None else self.input_ids[self.call_at + 1]

    @property
    def readout(self) -> str:
        """``"call"`` when the sample has a call position, else ``"after_marker"``."""
        return "after_marker" if self.call_at is None else "call"

    @property
    def readout_at(self) -> int:
        """The readout row: :attr:`call_at` on a test sample, else :attr:`predict_at`."""
        return self.predict_at if self.call_at is None else self.call_at

    def rows(self, name: str) -> tuple[int, ...]:
        """The query rows of a scope's ``rows`` name (:mod:`plip_nn.scope`) in this text.

        ``continuation`` runs from the marker to the end of this text (for a generation
        prompt that is the marker span; the generated rows are added during generation).
        ``to_call`` runs from the marker to the call's prediction row (:attr:`call_at`)
        included; without a call (a generation prompt) to the end of this text.
        """
        if name == "marker":
            return (self.source,)
        if name == "marker_span":
            return self.marker_span
        if name == "continuation":
            return tuple(range(self.source, self.n_tokens))
        if name == "to_call":
            end = self.n_tokens if self.call_at is None else self.call_at + 1
            return tuple(range(self.source, end))
        raise ScopeError(f"rows {name!r}: use one of {', '.join(ROWS)}")

    def target_set(self, name: str) -> tuple[int, ...]:
        """The key columns of a scope's ``targets`` name: ``plip``, ``identifiers`` or
        ``mentions``."""
        if name == "plip":
            return self.targets
        if name == "identifiers":
            return self.identifier_targets
        if name == "mentions":
            return self.mention_targets
        raise ScopeError(f"targets {name!r}: use one of {', '.join(TARGETS)}")

    def edges(self, rows: str, targets: str) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
        """The scope's causally valid edges as ``(sources, targets)`` groups, one per run of
        rows that see the same targets.

        A row sees the targets before it. For ``plip``/``identifiers`` (every target before
        the marker) that is the single group ``(rows, targets)``; a mention after the marker
        (``add`` in ``fn test_add``) joins the groups of the rows after it. Each row is in one
        group, so an operation acts once per row over every target the row can see (SetValue
        and Scale keep their meaning).
        """
        tgt = self.target_set(targets)
        groups: list[tuple[list[int], tuple[int, ...]]] = []
        for r in self.rows(rows):
            seen = tuple(t for t in tgt if t < r)
            if not seen:
                continue
            if groups and groups[-1][1] == seen:
                groups[-1][0].append(r)
            else:
                groups.append(([r], seen))
        return tuple((tuple(src), seen) for src, seen in groups)

    def control_pool(self, rows: str) -> tuple[int, ...]:
        """Keys a random control may draw for ``rows``: causally valid for every row (before
        the first), outside the function's signature and outside every target (mentions
        included)."""
        first = self.rows(rows)[0]
        banned = (
            set(self.signature)
            | set(self.identifier_targets)
            | set(self.targets)
            | set(self.mention_targets)
        )
        return tuple(t for t in range(first) if t not in banned)


def _contains(span: tuple[int, int], pos: int) -> bool:
    return span[0] <= pos < span[1]


def char_to_token(
    offsets: Sequence[tuple[int, int]],
    char_pos: int,
    *,
    text_len: int,
    text: str | None = None,
) -> int:
    """Index of the token that contains character ``char_pos``.

    Args:
        offsets: ``(start, end)`` character span of each token; special tokens have ``(0, 0)``.
        char_pos: A character position in the text, ``0 <= char_pos < text_len``.
        text_len: Length of the text, for the range check.
        text: The text itself; needed only to tell whitespace from visible characters when
            ``char_pos`` falls in a gap that no token covers.

    Returns:
        The index into ``offsets`` (the absolute token position).

    Raises:
        PositionError: ``char_pos`` is out of range, or it is a visible character covered by no
            token, or it is in a trailing gap with no token after it.
    """
    if isinstance(char_pos, bool) or not isinstance(char_pos, int):
        raise PositionError(f"char_pos={char_pos!r} must be an int")
    if not 0 <= char_pos < text_len:
        raise PositionError(
            f"char_pos={char_pos} is out of range for a text of length {text_len}; "
            f"use a position in 0..{text_len - 1}"
        )
    for i, span in enumerate(offsets):
        if _contains(span, char_pos):
            return i
    if text is None or not text[char_pos].isspace():
        shown = repr(text[char_pos]) if text is not None else "?"
        raise PositionError(
            f"char_pos={char_pos} ({shown}) is covered by no token: the tokenizer dropped it "
            "(normalizer or pre-tokenizer); pick a visible character the tokenizer keeps"
        )
    following = [i for i, (start, end) in enumerate(offsets) if end > start and start > char_pos]
    if not following:
        raise PositionError(
            f"char_pos={char_pos} is trailing whitespace that no token covers; "
            "point it at a visible character"
        )
    return following[0]


def _is_mid_token(text: str, span: tuple[int, int], char_pos: int) -> bool:
    return span[0] < char_pos and text[span[0] : char_pos].strip() != ""


def locate(
    tokenizer: Any,
    text: str,
    marker_char_pos: int,
    target_char_positions: Sequence[int],
    *,
    sample_id: str = "?",
    marker_pattern: str | None = None,
    language: str | None = None,
    call_char_pos: int | None = None,
) -> TokenPositions:
    """Tokenize ``text`` and map the marker and target characters to token positions.

    Args:
        tokenizer: A HuggingFace fast tokenizer (one that supports ``return_offsets_mapping``).
        text: The sample's code, tokenized as is with the tokenizer's defaults.
        marker_char_pos: First character of the marker.
        target_char_positions: First characters of the targets.
        sample_id: Named in errors and warnings.
        marker_pattern: The marker text at ``marker_char_pos``; gives the marker span (without
            it the span is the source token alone).
        language: ``python`` or ``rust``; gives the signature span (without it the signature
            is the identifier tokens).
        call_char_pos: On a test sample, the first character of the function's name at the
            test's first call (:func:`plip_nn.codesrc.call_char_pos`); gives ``call_at``, the
            token before the one holding it.

    Returns:
        The token positions, with the BOS offset and mid-token characters recorded.

    Raises:
        PositionError: A position is out of range or cannot be mapped; the message names the
            sample, the value and the text length.
    """
    if not target_char_positions:
        raise PositionError(f"sample {sample_id}: no target_char_positions; give at least one")
    try:
        enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    except NotImplementedError as exc:  # slow (Python) tokenizers have no offsets
        raise PositionError(
            f"sample {sample_id}: tokenizer {type(tokenizer).__name__} gives no offset mapping; "
            "load a fast tokenizer (use_fast=True)"
        ) from exc
    ids = [int(i) for i in enc["input_ids"]]
    special = list(enc.get("special_tokens_mask") or [0] * len(ids))
    # Special tokens cover no text; (0, 0) spans never contain a character, but be explicit.
    offsets = [
        (0, 0) if special[i] else (int(s), int(e)) for i, (s, e) in enumerate(enc["offset_mapping"])
    ]
    bos_offset = 0
    while bos_offset < len(ids) and special[bos_offset]:
        bos_offset += 1

    def to_token(pos: int, what: str) -> int:
        try:
            return char_to_token(offsets, pos, text_len=len(text), text=text)
        except PositionError as exc:
            raise PositionError(f"sample {sample_id}: {what} {exc}") from None

    source = to_token(marker_char_pos, "marker")
    mid = [marker_char_pos] if _is_mid_token(text, offsets[source], marker_char_pos) else []
    targets: set[int] = set()
    dropped: list[int] = []
    for pos in target_char_positions:
        tok = to_token(pos, "target")
        if _is_mid_token(text, offsets[tok], pos):
            mid.append(pos)
        if tok == source:
            dropped.append(pos)
            continue
        targets.add(tok)
    if dropped:
        logger.warning(
            "sample %s: target chars %s fall in the source token %d and are dropped",
            sample_id,
            dropped,
            source,
        )
    if mid:
        logger.info("sample %s: chars %s start mid-token", sample_id, mid)
    if not targets:
        raise PositionError(
            f"sample {sample_id}: every target falls in the source token {source}; "
            "the sample has no edge to edit"
        )
    span: tuple[int, ...] = (source,)
    if marker_pattern:
        a, b = marker_span_chars(text, marker_char_pos, marker_pattern)
        span = tuple(sorted({source, *_overlapping(offsets, a, b)}))
    idents: set[int] = set(targets)
    for pos in target_char_positions:
        idents |= _overlapping(offsets, *identifier_span(text, pos))
    idents -= set(span)
    sig: set[int] = set()
    if language is not None:
        sig = _overlapping(offsets, *signature_span(text, min(target_char_positions), language))
        sig -= set(span)
    call_at = None
    if call_char_pos is not None:
        gold = to_token(call_char_pos, "call")
        if gold <= span[-1]:
            raise PositionError(
                f"sample {sample_id}: the call's name (char {call_char_pos}) shares token "
                f"{gold} with the marker; the call has no prediction row after the marker"
            )
        call_at = gold - 1
    readout = span[-1] if call_at is None else call_at
    mentions = _mentions(text, offsets, target_char_positions, readout) - set(span)
    return TokenPositions(
        input_ids=tuple(ids),
        source=source,
        targets=tuple(sorted(targets)),
        bos_offset=bos_offset,
        mid_token_chars=tuple(mid),
        dropped_targets=tuple(dropped),
        marker_span=span,
        identifier_targets=tuple(sorted(idents)),
        signature=tuple(sorted(sig)),
        call_at=call_at,
        mention_targets=tuple(sorted(mentions | idents)),
    )


def _mentions(
    text: str,
    offsets: Sequence[tuple[int, int]],
    target_char_positions: Sequence[int],
    readout: int,
) -> set[int]:
    """Tokens up to row ``readout`` that overlap a mention of the function's name: the name
    (read at the second target char) not glued to a letter or digit on either side, so ``add``
    in ``test_add`` counts and ``address`` does not. Empty when the name cannot be read."""
    try:
        name = function_name_at(text, list(target_char_positions))
    except ValueError:
        return set()
    out: set[int] = set()
    for m in re.finditer(r"(?<![A-Za-z0-9])" + re.escape(name) + r"(?![A-Za-z0-9])", text):
        out |= {t for t in _overlapping(offsets, m.start(), m.end()) if t <= readout}
    return out


def _overlapping(offsets: Sequence[tuple[int, int]], start: int, end: int) -> set[int]:
    """Tokens whose character span overlaps ``[start, end)`` (special tokens never do)."""
    return {i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start}
