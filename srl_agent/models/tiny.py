"""The offline default policy: a tiny Qwen2-architecture model that speaks Qwen2.5's formats.

No model hub is reachable on this project's machines, so when no model is named the commands build one:

- a byte-level BPE tokenizer trained with ``tokenizers`` on the bundled expert trajectories' text
  (issues, thoughts, canonical actions, observations) plus the prompts' own text, with Qwen2.5's
  pre-tokenizer, special tokens and chat template (TRL's copy of it, so TRL recognises the template);
- a randomly initialised ``Qwen2ForCausalLM`` of a few M parameters over that vocabulary.

The result is cached under ``$SRL_AGENT_CACHE`` (default ``~/.cache/srl-agent``) in a folder named
after the hash of everything that goes into it (recipe, corpus, template, build version), so it is
rebuilt only when one of those changes, and a build is atomic (a temporary folder renamed into place),
so concurrent processes (``accelerate launch``, parallel tests) never see half a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..prompts import EXPERT_TASK_TEMPLATE, ISSUE_TEMPLATE, OMITTED_TEMPLATE, SYSTEM_PROMPT

BUILD_VERSION = 1  # bump when the build procedure changes in a way the recipe does not capture
TRAJECTORY_DIR = Path(__file__).resolve().parents[2] / "trajectories"

# Qwen2.5's added tokens, in Qwen's id order. The first fourteen are special (skipped when decoding);
# <tool_call> and the FIM / repo tokens are ordinary added tokens there, so decoded completions keep them.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
ADDED_TOKENS = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
)
EOS, PAD = "<|im_end|>", "<|endoftext|>"
# Qwen2's pre-tokenizer: contractions, letter runs, single digits, punctuation runs, newlines, spaces.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class TinyRecipe:
    """What the tiny model is made of; any change gives a new cache folder."""

    vocab_size: int = 4096  # BPE merges stop earlier if the corpus runs out of pairs
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 8192
    seed: int = 0


def cache_root() -> Path:
    if os.environ.get("SRL_AGENT_CACHE"):
        return Path(os.environ["SRL_AGENT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srl-agent"


def chat_template() -> str:
    """Qwen2.5's chat template (tool calls as <tool_call> JSON), as TRL ships it."""
    from trl.chat_template_utils import qwen2_5_chat_template

    return qwen2_5_chat_template


def corpus(trajectories: Path | None = TRAJECTORY_DIR) -> list[str]:
    """The texts the tokenizer learns from: the prompts' fixed text and every bundled trajectory's text."""
    from ..actions import render
    from ..readers import read_trajectories

    texts = [SYSTEM_PROMPT, ISSUE_TEMPLATE, OMITTED_TEMPLATE, EXPERT_TASK_TEMPLATE]
    if trajectories is not None and Path(trajectories).exists():
        for traj in read_trajectories([trajectories]):
            texts.append(traj.task.problem_statement)
            for step in traj.steps:
                texts += [step.thought or "", render(step.action), step.observation or ""]
    return [t for t in texts if t]


def _digest(recipe: TinyRecipe, texts: list[str], template: str) -> str:
    h = hashlib.sha256(json.dumps({"build": BUILD_VERSION, "recipe": asdict(recipe)}, sort_keys=True).encode())
    for part in (template, *SPECIAL_TOKENS, *ADDED_TOKENS, QWEN2_SPLIT, *texts):
        h.update(hashlib.sha256(part.encode()).digest())
    return h.hexdigest()[:16]


def train_tokenizer(texts: list[str], recipe: TinyRecipe, template: str):
    """A byte-level BPE tokenizer (transformers fast tokenizer) with Qwen2.5's tokens and template."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    # Every byte is in the alphabet, so any text encodes (no unknown token) and decodes back exactly.
    trainer = trainers.BpeTrainer(vocab_size=recipe.vocab_size - len(SPECIAL_TOKENS) - len(ADDED_TOKENS),
                                  min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    # Added after training, as in Qwen: ids above the learned vocabulary.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, unk_token=None, bos_token=None,
        chat_template=template, model_max_length=recipe.max_position_embeddings, clean_up_tokenization_spaces=False,
        padding_side="left",  # decoder-only generation pads on the left
    )


def build_model(tokenizer, recipe: TinyRecipe):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos, pad = tokenizer.convert_tokens_to_ids(EOS), tokenizer.convert_tokens_to_ids(PAD)
    config = Qwen2Config(
        vocab_size=-(-len(tokenizer) // 64) * 64,  # a multiple of 64, as real checkpoints pad theirs
        hidden_size=recipe.hidden_size, intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers, num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads, max_position_embeddings=recipe.max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=eos, pad_token_id=pad, use_cache=True,
    )
    torch.manual_seed(recipe.seed)
    model = Qwen2ForCausalLM(config)
    # Qwen2.5-Instruct's generation settings: stop at <|im_end|> or <|endoftext|>.
    model.generation_config = GenerationConfig(eos_token_id=[eos, pad], pad_token_id=pad, bos_token_id=None)
    return model


def tiny_model_path(recipe: TinyRecipe | None = None, trajectories: Path | None = TRAJECTORY_DIR,
                    root: Path | None = None) -> Path:
    """The cached tiny model's folder (``save_pretrained`` layout), built on first use."""
    recipe = recipe or TinyRecipe()
    texts, template = corpus(trajectories), chat_template()
    target = (root or cache_root()) / f"tiny-{_digest(recipe, texts, template)}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        tokenizer = train_tokenizer(texts, recipe, template)
        model = build_model(tokenizer, recipe)
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        (tmp / "srl_agent_recipe.json").write_text(
            json.dumps({"build": BUILD_VERSION, "recipe": asdict(recipe), "corpus_texts": len(texts)}, indent=1))
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same build first: theirs is identical
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
