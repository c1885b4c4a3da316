"""What every experiment shares: the common config, opening a study, running chunks as parts.

``open_study`` validates everything that can be wrong with the input -- config values, remote
key, model, corpus, token positions, causality, layer range -- *before* the run directory is
created, so bad input never leaves a half-written run behind.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from plip_nn.positions import TokenPositions
from plip_nn.remote import REMOTES, configure_remote
from plip_nn.runs import RunDir
from plip_nn.scope import DEFAULT_ROWS, DEFAULT_TARGETS, ROWS, TARGETS

if TYPE_CHECKING:
    import pandas as pd

    from plip_nn.models import ModelHandle

__all__ = [
    "CommonConfig",
    "ConfigError",
    "Prepared",
    "Study",
    "layer_index",
    "open_study",
    "part_units",
    "run_chunks",
]

log = logging.getLogger(__name__)

LANGUAGES = ("python", "rust")
ATTN_CHOICES = ("auto", "eager", "sdpa")
KINDS = ("test", "baseline", "generation")


class ConfigError(ValueError):
    """A config value is invalid; the message names the flag and the fix."""


def layer_index(value: str) -> int:
    """``--layer N``: a layer index >= 0 (the flag's parser; argparse prints the message)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid layer {value!r}: use a layer index (0, 1, ...)"
            + (
                "; every layer separately is `plip-nn knockout --layer all`"
                if value == "all"
                else ""
            )
        ) from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"invalid layer {value!r}: use an index >= 0")
    return n


C = TypeVar("C", bound="CommonConfig")
C_co = TypeVar("C_co", bound="CommonConfig", covariant=True)


@dataclass(frozen=True, kw_only=True)
class CommonConfig:
    """Flags shared by every experiment.

    Attributes:
        model: HF name or local path; ``"embedded"`` is the shipped tiny code model.
        corpus: corpus JSON path (``None``: the shipped corpus).
        out: run directory (``None``: ``runs/<experiment>-<UTC time>``).
        remote: ``none`` (local), ``local`` (nnsight's remote simulation) or ``ndif`` (key
            from the ``NDIF_API_KEY`` environment variable).
        device: torch device; ``auto`` is cuda when present, else cpu.
        dtype: ``float32``, ``float16``/``bfloat16`` or ``auto`` (the checkpoint's dtype).
        batch_size: rows per forward pass.
        layer: edited / read layer (``None``: the layer where Python marker->function
            attention peaks in a scan).
        seed: seed for random controls and sampling.
        resume: continue an existing run directory, skipping finished chunks.
        limit: use at most this many samples per language and kind (``None``: all).
        languages: languages to include: ``python`` and/or ``rust``.
        progress: show progress bars (stderr); --no-progress: hide the progress bars.
        device_map: transformers ``device_map`` (``auto`` spreads the model over GPUs);
            overrides ``device``.
        chat_template: wrap each sample in the tokenizer's chat template (instruct models):
            a user turn asking to continue the code, then the code as the start of the
            assistant turn; positions are shifted by the template's prefix.
        allow_code_change: with ``resume``, continue a run written by another git commit or
            plip-nn version (recorded per part in the manifest); refused otherwise.
        skip_masked: drop samples whose edges are causally masked (a target after the
            marker), one warning line each, listed in the manifest (``skipped_masked``);
            without it such a sample is an error (exit 2).
        rows: query rows of the study's default scope: marker (the marker's first token,
            PLIP-rs), marker_span (every token of the marker, plus generated markers), to_call
            (from the marker to the call's prediction row; in generation until the test's
            first call is written) or continuation (from the marker on, plus every generated
            row).
        targets: key columns of the default scope: identifiers (every token of def/fn, the
            name and each parameter), plip (the token at each target char, PLIP-rs) or
            mentions (the identifiers plus every earlier mention of the name).
        attn: attention implementation: ``auto`` (the fastest route each pass allows: SDPA
            with the additive-mask route for knockout, Scale and reads, eager for SetValue;
            recorded in the manifest), ``eager`` (every pass eager, softmax route) or
            ``sdpa`` (SDPA only; SetValue refused).
    """

    model: str = "embedded"
    corpus: str | None = None
    out: str | None = None
    remote: str = "none"
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 32
    layer: int | None = None
    seed: int = 0
    resume: bool = False
    limit: int | None = None
    languages: tuple[str, ...] = LANGUAGES
    progress: bool = True
    chat_template: bool = False
    allow_code_change: bool = False
    skip_masked: bool = False
    device_map: str | None = None
    rows: str = DEFAULT_ROWS
    targets: str = DEFAULT_TARGETS
    attn: str = "auto"

    FLAG_TYPES: ClassVar[Mapping[str, Callable[[str], Any]]] = {"layer": layer_index}
    """Field -> the parser of its flag, where the annotation's type is not enough."""

    @classmethod
    def from_flags(cls: type[C], values: Mapping[str, Any]) -> C:
        """The config from parsed flag values (field -> value); a subclass may read a flag
        value that stands for several fields (``knockout --layer all``)."""
        return cls(**values)

    def __post_init__(self) -> None:
        if self.remote not in REMOTES:
            raise ConfigError(f"--remote {self.remote!r}: use one of {', '.join(REMOTES)}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size!r}: use an integer >= 1")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ConfigError(f"--limit {self.limit!r}: use an integer >= 1 (or omit it)")
        if self.layer is not None and (not isinstance(self.layer, int) or self.layer < 0):
            raise ConfigError(f"--layer {self.layer!r}: use a layer index >= 0 (or omit it)")
        langs = tuple(self.languages)
        bad = [lang for lang in langs if lang not in LANGUAGES]
        if bad or not langs:
            raise ConfigError(f"--languages {langs!r}: use python and/or rust")
        object.__setattr__(self, "languages", langs)
        if self.dtype not in ("float32", "float16", "bfloat16", "auto"):
            raise ConfigError(f"--dtype {self.dtype!r}: use float32, float16, bfloat16 or auto")
        if self.rows not in ROWS:
            raise ConfigError(f"--rows {self.rows!r}: use one of {', '.join(ROWS)}")
        if self.targets not in TARGETS:
            raise ConfigError(f"--targets {self.targets!r}: use one of {', '.join(TARGETS)}")
        if self.attn not in ATTN_CHOICES:
            raise ConfigError(f"--attn {self.attn!r}: use one of {', '.join(ATTN_CHOICES)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready resolved config (``progress`` is presentation, not identity)."""
        d = asdict(self)
        d.pop("progress", None)
        d["languages"] = list(self.languages)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class Prepared:
    """A corpus sample with its token ids and token positions (every scope's rows and keys)."""

    sample: Any  # plip_nn.corpus.Sample
    positions: TokenPositions
    text: str = ""  # what the model reads (the code, or the code inside a chat template)

    @property
    def input_ids(self) -> tuple[int, ...]:
        return self.positions.input_ids

    @property
    def call_at(self) -> int | None:
        """A test sample's call row (the prediction of the name's first token), else None."""
        return self.positions.call_at

    @property
    def gold_token(self) -> int | None:
        """A test sample's gold token at the call (the name's first token), else None."""
        return self.positions.gold_token

    @property
    def id(self) -> str:
        return str(self.sample.id)

    @property
    def language(self) -> str:
        return str(self.sample.language)

    @property
    def kind(self) -> str:
        return str(self.sample.kind)


@dataclass
class Study(Generic[C_co]):
    """An open study: its config, model, prepared samples and the run directory.

    ``cfg`` is the experiment's own config (``Study[knockout.Config]``), the one holder of
    every flag: a step that takes the study reads its flags there.
    """

    cfg: C_co
    experiment: str
    handle: ModelHandle
    samples: list[Prepared]
    run: RunDir

    def select(self, kind: str, language: str | None = None) -> list[Prepared]:
        return [
            p
            for p in self.samples
            if p.kind == kind and (language is None or p.language == language)
        ]

    @property
    def model_name(self) -> str:
        return self.handle.name


def _load_samples(cfg: CommonConfig, kinds: Sequence[str]) -> list[Any]:
    from plip_nn.corpus import load_corpus

    corpus = load_corpus(cfg.corpus)
    chosen: list[Any] = []
    for language in cfg.languages:
        for kind in kinds:
            picked = list(corpus.select(language=language, kind=kind))
            if cfg.limit is not None:
                picked = picked[: cfg.limit]
            chosen.extend(picked)
    if not chosen:
        where = cfg.corpus or "the shipped corpus"
        raise ConfigError(
            f"corpus {where} has no samples of kind {'/'.join(kinds)} for "
            f"{'/'.join(cfg.languages)}; use a corpus with such samples"
        )
    return chosen


CHAT_INSTRUCTION = "Continue this code exactly where it stops."


def render(tokenizer: Any, code: str, chat_template: bool) -> tuple[str, int]:
    """The text the model sees and the char offset of ``code`` in it.

    With ``chat_template`` the code becomes the beginning of the assistant's answer to
    :data:`CHAT_INSTRUCTION` (``continue_final_message``), so generation continues the code.
    """
    if not chat_template:
        return code, 0
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "--chat-template: this model's tokenizer has no chat template; drop the flag "
            "(base models read the code as is)"
        )
    messages = [
        {"role": "user", "content": CHAT_INSTRUCTION},
        {"role": "assistant", "content": code},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    shift = text.rfind(code)
    if shift < 0:
        raise ConfigError(
            "--chat-template: the template rewrote the code (it does not appear verbatim in "
            "the rendered prompt); drop the flag for this model"
        )
    return text, shift


def prepare(
    handle: ModelHandle,
    samples: Sequence[Any],
    chat_template: bool = False,
    skipped: list[dict[str, str]] | None = None,
) -> list[Prepared]:
    """Token ids and positions for each sample; fails on masked edges or too-long samples.

    With ``skipped`` (a list), a sample with a causally masked edge is dropped instead: one
    warning line, and ``{"sample_id", "reason"}`` appended to ``skipped``.

    Raises:
        plip_nn.positions.PositionError: a char position is out of range.
        plip_nn.edits.CausallyMaskedEdgeError: a target is not before the marker.
        ConfigError: a sample is longer than the model's context.
    """
    from plip_nn.codesrc import generation_prompt, generation_suffix
    from plip_nn.edits import CausallyMaskedEdgeError
    from plip_nn.positions import locate

    max_len = getattr(handle.config, "max_position_embeddings", None)
    out = []
    for s in samples:
        if s.kind == "generation":
            if generation_suffix(s.code, s.language) is None:
                raise ConfigError(_bad_prompt(s))
            # One prompt rule everywhere: the prompt ends right after the marker (a legacy
            # trailing space is cut; docs/CONTRACT.md, "Prompts"). Positions are unchanged by the cut.
            s = replace(s, code=generation_prompt(s.code, s.language))
        text, shift = render(handle.tokenizer, s.code, chat_template)
        call = _call_char(s)
        tp = locate(
            handle.tokenizer,
            text,
            s.marker_char_pos + shift,
            [t + shift for t in s.target_char_positions],
            sample_id=s.id,
            marker_pattern=s.marker_pattern,
            language=s.language,
            call_char_pos=None if call is None else call + shift,
        )
        if not tp.targets:
            raise ConfigError(f"sample {s.id!r}: no target tokens left after mapping; fix it")
        late = [t for t in tp.targets if t >= tp.source]
        if late and skipped is not None:
            reason = (
                f"target token {late[0]} is not before the marker token {tp.source} "
                "(causally masked)"
            )
            log.warning("--skip-masked: dropped sample %r: %s", s.id, reason)
            skipped.append({"sample_id": str(s.id), "reason": reason})
            continue
        if late:
            raise CausallyMaskedEdgeError(
                sample=s.id,
                source=tp.source,
                target=late[0],
                reason="the marker precedes this target, so the causal mask hides the edge "
                "(put the marker after the function, or run `plip-nn corpus check`)",
            )
        if max_len is not None and len(tp.input_ids) > int(max_len):
            raise ConfigError(
                f"sample {s.id!r} has {len(tp.input_ids)} tokens; the model's context is "
                f"{max_len}; shorten it or use --limit/another corpus"
            )
        out.append(Prepared(sample=s, positions=tp, text=text))
    return out


def _call_char(s: Any) -> int | None:
    """A test sample's call position (the first char of the function's name at the test's
    first call; :func:`plip_nn.codesrc.call_char_pos`), None for other kinds.

    Raises:
        ConfigError: the test never calls the function (names the sample).
    """
    from plip_nn.codesrc import call_char_pos, function_name_at

    if s.kind != "test":
        return None
    try:
        name = (
            s.function.name
            if s.function is not None
            else function_name_at(s.code, s.target_char_positions)
        )
        return call_char_pos(s.code, s.language, name, s.marker_char_pos, sample_id=s.id)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _bad_prompt(s: Any) -> str:
    """Why a generation prompt cannot be used, and what to do (bad input: exit 2)."""
    first = min(s.target_char_positions)
    if s.marker_char_pos < first:
        return (
            f"sample {s.id!r}: its test marker (char {s.marker_char_pos}) comes before the "
            f"function it tests (char {first}), e.g. a test in doc comments above the function; "
            "this study edits attention from the marker to the function, which a causal model "
            "cannot have when the function comes later. Use prompts with the test after the "
            "function (`plip-nn corpus check FILE` lists such samples)"
        )
    return (
        f"sample {s.id!r}: a {s.language} generation prompt must end right after its marker "
        f"({'>>>' if s.language == 'python' else repr('#[test]' + chr(10))}); it ends with "
        f"{s.code[-16:]!r}. Cut it after the marker"
    )


def default_out(experiment: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return str(Path("runs") / f"{experiment}-{stamp}")


def open_study(
    cfg: C,
    experiment: str,
    kinds: Sequence[str],
    config_dict: dict[str, Any],
    *,
    handle: ModelHandle | None = None,
    check_model: Callable[[ModelHandle], None] | None = None,
) -> Study[C]:
    """Validate the inputs, load model and corpus, then create (or reopen) the run directory.

    Args:
        cfg: the common part of the experiment's config.
        experiment: experiment name (manifest, default run dir).
        kinds: corpus kinds this experiment uses.
        config_dict: the experiment's full resolved config (written to config.json).
        handle: an already loaded model (tests, the triangle's sub-steps).
        check_model: validates config values that depend on the model (raises ConfigError)
            before anything is written.
    """
    configure_remote(cfg.remote)  # RemoteConfigError before anything is written
    raw_samples = _load_samples(cfg, kinds)  # corpus errors before the (slower) model load
    if handle is None:
        # torch loads when the experiment runs, not with the CLI
        from plip_nn.models import load_model

        dtype = None if cfg.dtype == "auto" else cfg.dtype
        handle = load_model(
            cfg.model, device=cfg.device, dtype=dtype, device_map=cfg.device_map, attn=cfg.attn
        )
    if cfg.layer is not None and cfg.layer >= handle.n_layers:
        raise ConfigError(
            f"--layer {cfg.layer} is out of range: the model has {handle.n_layers} layers "
            f"(0..{handle.n_layers - 1})"
        )
    if check_model is not None:
        check_model(handle)
    skipped: list[dict[str, str]] | None = [] if cfg.skip_masked else None
    samples = prepare(handle, raw_samples, cfg.chat_template, skipped)
    if not samples:
        raise ConfigError(
            "every selected sample has a causally masked edge; fix the corpus "
            "(`plip-nn corpus check`)"
        )
    out = config_dict.get("out") or default_out(experiment)
    config_dict = {**config_dict, "out": str(out)}
    tok = handle.tokenizer
    probe = tok("a", add_special_tokens=True)["input_ids"]
    bare = tok("a", add_special_tokens=False)["input_ids"]
    manifest = {
        "experiment": experiment,
        "model": handle.name,
        "model_revision": handle.revision,
        "model_class": type(handle.hf).__name__,
        "n_layers": handle.n_layers,
        "attn_implementation": handle.attn_implementation,
        "attention": handle.attention_policy(),
        "bos_policy": "tokenizer adds BOS (positions shifted by 1)"
        if len(probe) > len(bare)
        else "no BOS added",
        "seed": cfg.seed,
        "remote": cfg.remote,
        "device": str(handle.device),  # resolved (cfg.device may be "auto")
        "dtype": str(next(handle.hf.parameters()).dtype),
        "n_samples": len(samples),
        "skip_masked": cfg.skip_masked,
        "skipped_masked": skipped or [],
    }
    run = RunDir.open(
        out,
        config_dict,
        resume=cfg.resume,
        manifest=manifest,
        allow_code_change=cfg.allow_code_change,
    )
    return Study(cfg=cfg, experiment=experiment, handle=handle, samples=samples, run=run)


T = TypeVar("T")

BATCHES_PER_PART = 4
"""Default part size of :func:`run_chunks`, in batches (``--batch-size`` units each)."""
MIN_PART_UNITS = 8


def part_units(batch_size: int, batches_per_part: int) -> int:
    """Units per part file: ``batches_per_part`` batches of ``batch_size``, at least 8.

    The part is the unit of resume (one parquet file, skipped when it exists). It is sized in
    batches so that ``--batch-size`` (rows per forward pass) is never capped by a part.
    """
    return max(MIN_PART_UNITS, batch_size * batches_per_part)


def chunk_key(index: int, ids: Sequence[str]) -> str:
    digest = zlib.crc32("\n".join(ids).encode("utf-8"))
    return f"{index:05d}-{digest:08x}"


def run_chunks(
    study: Study,
    table: str,
    units: Sequence[T],
    unit_id: Callable[[T], str],
    work: Callable[[list[T]], pd.DataFrame],
    *,
    desc: str,
    batches_per_part: int = BATCHES_PER_PART,
) -> None:
    """Run ``work`` on fixed chunks of ``units``, writing each chunk's rows as one part.

    A chunk holds :func:`part_units` units. Chunks whose part exists are skipped (resume).
    Chunk composition depends only on the unit order and the part size, so a resumed run
    computes the same batches as an uninterrupted one and gets the same numbers.
    """
    from tqdm.auto import tqdm

    size = part_units(study.cfg.batch_size, batches_per_part)
    chunks = [list(units[i : i + size]) for i in range(0, len(units), size)]
    with tqdm(
        total=len(units), desc=desc, disable=not study.cfg.progress, unit="item", leave=False
    ) as bar:
        for i, chunk in enumerate(chunks):
            key = chunk_key(i, [unit_id(u) for u in chunk])
            if study.run.has_part(table, key):
                bar.update(len(chunk))
                continue
            df = work(chunk)
            study.run.write_part(table, key, df)
            bar.update(len(chunk))
