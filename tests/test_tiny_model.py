"""The offline default model: built without a hub, cached by recipe, speaking Qwen2.5's formats."""

from __future__ import annotations

import json
import random

import pytest

from srl_agent.models.tiny import ADDED_TOKENS, SPECIAL_TOKENS, TRAJECTORY_DIR, TinyRecipe, corpus, tiny_model_path
from srl_agent.prepare import prepare

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a hub
    root = tmp_path_factory.mktemp("cache")
    return tiny_model_path(root=root), root


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny[0])


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    out = tmp_path_factory.mktemp("steps") / "steps.jsonl"
    prepare([TRAJECTORY_DIR], out)
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_builds_offline_once_per_recipe(tiny):
    from transformers import AutoConfig

    path, root = tiny
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "qwen2"
    stamp = (path / "config.json").stat().st_mtime_ns
    assert tiny_model_path(root=root) == path  # cached: same folder, not rebuilt
    assert (path / "config.json").stat().st_mtime_ns == stamp
    other = tiny_model_path(TinyRecipe(hidden_size=64, intermediate_size=128), root=root)
    assert other != path and other.name.startswith("tiny-")
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".building")) == []


def test_model_has_a_few_hundred_thousand_to_a_few_million_parameters(tiny):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny[0])
    n = sum(p.numel() for p in model.parameters())
    assert 1e5 < n < 2e7


def test_tokenizer_round_trips_every_canonical_action_and_thought(tokenizer, steps):
    assert len(steps) > 0
    for row in steps:
        for text in (row["expert_action"], row["expert_thought"] or ""):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(ids) == text


def test_tokenizer_is_byte_level_any_text_round_trips(tokenizer):
    rng = random.Random(0)
    alphabet = "abcXYZ 019\t\n<>=/\\\"'`{}[]()é中文🙂\u00a0"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_qwen25_special_tokens(tokenizer):
    for token in SPECIAL_TOKENS + ADDED_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, token
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    # As in Qwen2.5, <tool_call> is an ordinary added token: decoding with skip_special_tokens keeps it.
    ids = tokenizer("<tool_call>x</tool_call><|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<tool_call>x</tool_call>"


def test_chat_template_is_qwen25_and_renders_tool_calls(tokenizer):
    from trl.chat_template_utils import qwen2_5_chat_template

    assert tokenizer.chat_template == qwen2_5_chat_template  # TRL recognises the model family
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": "<think>look</think>",
         "tool_calls": [{"type": "function", "function": {"name": "bash", "arguments": {"command": "ls /testbed"}}}]},
        {"role": "tool", "content": "setup.py"},
    ]
    tools = [{"type": "function", "function": {"name": "bash", "description": "run a command",
                                               "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nsys\n\n# Tools")
    assert '<tool_call>\n{"name": "bash", "arguments": {"command": "ls /testbed"}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\nsetup.py\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_prompts_render_and_the_model_generates(tiny, tokenizer, steps):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny[0]).eval()
    text = tokenizer.apply_chat_template(steps[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert text.count("<|im_start|>") == len(steps[0]["prompt"]) + 1
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_corpus_holds_the_prompts_and_trajectory_text():
    texts = corpus()
    from srl_agent.prompts import SYSTEM_PROMPT

    assert SYSTEM_PROMPT in texts
    assert any("<function=" in t for t in texts)  # canonical actions
