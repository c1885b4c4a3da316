"""Train plip-nn's embedded tiny Qwen2 code model (issue #4) and write its model card.

The model is a toy: a few million parameters trained for minutes on 2 CPU threads, shipped in
``plip_nn/data/model/`` so the whole study runs offline on a laptop. Steps:

1. **Gather code text** into ``--data-dir`` (gitignored): Python from the installed standard
   library; Rust from Debian's ``librust-*-dev`` packages (crate sources, fetched with
   ``apt-get download``; crates.io itself is unreachable here). Each source file goes to train
   or validation by a hash of its path (5% validation).
2. **Add synthetic examples** (``scripts/synthetic_code.py``): small Python functions with
   doctests and Rust functions followed by ``#[test]`` functions that call them, so the toy
   model learns the marker -> call pattern. Function names of the held-out prompts in
   ``scripts/embedded_model_eval_prompts.py`` are never generated.
3. **Train a byte-level BPE tokenizer** with Qwen2's own pre-tokenizer (``AutoTokenizer`` loads
   every qwen2 directory as ``Qwen2Tokenizer`` and imposes it). That pre-tokenizer glues a space
   to the following word, so a prompt ending in ``">>> "`` or ``"#[test]\\nfn "`` ends in a bare
   space token never seen before an identifier in plain text. Half of the synthetic documents are
   therefore tokenized in pieces cut right after those markers, exactly as such prompts are.
4. **Train ``Qwen2ForCausalLM``** (grouped-query attention) with AdamW and a cosine schedule on
   random 256-token windows of the four streams (real/synthetic x Python/Rust), bf16 autocast.
5. **Save** config, float16 safetensors, tokenizer and generation config; reload the saved
   files in float32 and **evaluate** those: validation perplexity per language against an
   add-one-smoothed unigram model fitted on the training tokens, and greedy completions of the
   held-out prompts. Writes ``training_metrics.json`` and ``plip_nn/data/MODEL_CARD.md``.

Stage 2 (``--init-from DIR``) continues training an existing model directory with *its*
tokenizer (no tokenizer training) on a mix dominated by the *copy curriculum*
(``--copy-fraction``): synthetic functions whose function and parameter names are random
syllable words, so their doctests/tests can only name the function by copying it from the
context, plus the real stdlib/Rust text so real-code perplexity stays low.

The modules: :mod:`embedded.config` (``TrainConfig``: every flag is one of its fields),
:mod:`embedded.data`, :mod:`embedded.evaluate`, :mod:`embedded.train`, :mod:`embedded.card` and
:mod:`embedded.cli` (the flags, derived from ``TrainConfig`` by
:func:`experiments.flags.config_flags`, the helper ``plip-nn`` uses). The entry point stays
``scripts/train_embedded_model.py``.

Usage (the shipped model: stage 1, then the stage-2 continuation; see MODEL_CARD.md)::

    .venv/bin/python scripts/train_embedded_model.py --steps 100000 --seed 0 --minutes 25
    .venv/bin/python scripts/train_embedded_model.py --init-from plip_nn/data/model \
        --copy-fraction 0.8 --seq-len 160 --lr 1e-3 --minutes 20
"""
