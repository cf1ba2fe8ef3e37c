"""Model backends behind one small interface: chat prompts in, completion texts out.

A ``Policy`` has ``name`` and ``generate(batch, *, max_new_tokens, temperature, seed) -> list[str]``:
one completion per chat-message list, in order. Temperature 0 means greedy decoding. Three backends:

- ``TransformersPolicy``: any causal LM with a chat template, on CPU or GPU, batched (left padding);
- ``VLLMPolicy``: vLLM's offline engine, when vllm is installed (GPU);
- ``OpenAIPolicy``: any OpenAI-compatible ``/chat/completions`` endpoint (vLLM serve, SGLang, TGI, …),
  through the ``openai`` package when it is installed, else plain ``requests``.

Heavy imports (torch, transformers, vllm) happen in the constructors, so importing this module is cheap.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

Messages = list[dict[str, Any]]
BACKENDS = ("transformers", "vllm", "openai")


class Policy(Protocol):
    name: str

    def generate(self, batch: list[Messages], *, max_new_tokens: int, temperature: float, seed: int | None) -> list[str]:
        ...


class TransformersPolicy:
    """A Hugging Face causal LM; the prompt is the tokenizer's chat template with the generation prompt."""

    def __init__(self, model: str, *, device: str | None = None, dtype: str = "auto", batch_size: int = 8,
                 tokenizer: Any = None, model_obj: Any = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        # Decoder-only batches pad on the left so every row's last prompt token sits at the same position.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if model_obj is None:
            torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
            model_obj = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
        self.model = model_obj.to(self.device).eval()

    def generate(self, batch: list[Messages], *, max_new_tokens: int = 512, temperature: float = 0.0,
                 seed: int | None = 0) -> list[str]:
        import torch

        texts = [self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in batch]
        if seed is not None:
            torch.manual_seed(seed)
        out: list[str] = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i : i + self.batch_size], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature > 0 \
                else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
            with torch.no_grad():
                ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                          **sampling)
            new = ids[:, enc["input_ids"].shape[1] :]
            out += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return out


class VLLMPolicy:
    """vLLM's offline engine (``LLM.chat``): one call generates the whole batch."""

    def __init__(self, model: str, **engine_args: Any):
        try:
            from vllm import LLM
        except ImportError as e:
            raise RuntimeError(
                f"the vllm backend needs the vllm package (pip install 'srl-agent[vllm]', on a GPU machine): {e}"
            ) from None
        self.name = model
        self.llm = LLM(model=model, **engine_args)

    def generate(self, batch: list[Messages], *, max_new_tokens: int = 512, temperature: float = 0.0,
                 seed: int | None = 0) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, seed=seed)
        outputs = self.llm.chat(batch, params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]


class OpenAIPolicy:
    """An OpenAI-compatible chat endpoint. Requests in a batch run concurrently (the server batches them).

    The key comes from ``api_key`` or ``$OPENAI_API_KEY`` (local servers accept anything). Reasoning
    that a server returns apart from the content (``reasoning_content``) is put back as a
    ``<think>`` block, so the completion parses like any other.
    """

    def __init__(self, model: str, base_url: str, *, api_key: str | None = None, timeout: float = 600,
                 concurrency: int = 8):
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout = timeout
        self.concurrency = concurrency
        try:
            import openai
        except ImportError:
            self._client = None  # plain HTTP below
        else:
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=timeout)

    def _one(self, messages: Messages, max_new_tokens: int, temperature: float, seed: int | None) -> str:
        from .rewards.completion import completion_text

        body: dict[str, Any] = {"model": self.name, "messages": messages, "max_tokens": max_new_tokens,
                                "temperature": temperature}
        if seed is not None:
            body["seed"] = seed
        if self._client is not None:
            message = self._client.chat.completions.create(**body).choices[0].message.model_dump()
        else:
            import requests

            r = requests.post(f"{self.base_url}/chat/completions", json=body, timeout=self.timeout,
                              headers={"Authorization": f"Bearer {self.api_key}"})
            if r.status_code != 200:
                raise RuntimeError(f"{self.base_url}/chat/completions answered {r.status_code}: {r.text[:500]}")
            message = r.json()["choices"][0]["message"]
        return completion_text({"role": "assistant", **message})

    def generate(self, batch: list[Messages], *, max_new_tokens: int = 512, temperature: float = 0.0,
                 seed: int | None = 0) -> list[str]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(batch)))) as pool:
            return list(pool.map(lambda m: self._one(m, max_new_tokens, temperature, seed), batch))


def make_policy(model: str | None, backend: str = "transformers", base_url: str | None = None, **kwargs: Any) -> Policy:
    """A policy by backend name. ``model`` None or "tiny" is the offline tiny model (local backends)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "openai":
        if not base_url:
            raise ValueError("the openai backend needs --base-url (e.g. http://localhost:8000/v1)")
        if not model:
            raise ValueError("the openai backend needs --model (the served model's name)")
        return OpenAIPolicy(model, base_url, **kwargs)
    if base_url:
        raise ValueError(f"--base-url is for the openai backend, not {backend}")
    from .models import resolve_model

    path = resolve_model(model)
    return VLLMPolicy(path, **kwargs) if backend == "vllm" else TransformersPolicy(path, **kwargs)
