"""Small randomly initialised causal LMs, for tests and benchmarks of the transformers backend.

No weights can be downloaded here, so the transformers backend is exercised with
models built from an architecture's config with random weights, and a
byte-level tokenizer built in code (one token per UTF-8 byte, no merges, so any
text round-trips). Their replies are gibberish, but deterministic under greedy
decoding, which is what tests of batching, stopping and scoring need. They say
nothing about accuracy.
"""

from __future__ import annotations

from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TINY_SHAPE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}
"""The config values of every tiny model but its vocabulary (MoE models add
``TINY_MOE_CONFIGS``)."""


def tiny_tokenizer(*, chat_template: bool = True) -> Any:
    """A byte-level tokenizer (263 tokens): a chat template with ``<|role|>`` markers,
    or none (then ``<s>`` starts every text, as for a base model)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate([*SPECIAL, *alphabet])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    if not chat_template:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="<|end|>" if chat_template else "</s>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL[3:],
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_causal_lm(
    architecture: str = "llama", *, vocab_size: int = 263, seed: int = 0, **config: Any
) -> Any:
    """A small causal LM of ``architecture`` (a transformers model type such as
    ``llama``, ``qwen2``, ``mixtral``, ``qwen2_moe``) with random weights, in float32."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    settings: dict[str, Any] = {"vocab_size": vocab_size, **TINY_SHAPE, **config}
    torch.manual_seed(seed)
    model_config = AutoConfig.for_model(architecture, **settings)
    return AutoModelForCausalLM.from_config(model_config, dtype=torch.float32).eval()


def tiny_hf_model(
    name: str = "tiny",
    *,
    architecture: str = "llama",
    chat_template: bool = True,
    max_batch: int = 64,
    seed: int = 0,
) -> Any:
    """A ready :class:`~goa.inference.transformers_backend.HFModel` of a tiny random model."""
    from goa.inference.hf_model import HFModel

    tokenizer = tiny_tokenizer(chat_template=chat_template)
    model = tiny_causal_lm(architecture, vocab_size=len(tokenizer), seed=seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return HFModel(model, tokenizer, name=name, max_batch=max_batch)


# --- mixture-of-experts models ---------------------------------------------------------

TINY_MOE_CONFIGS: dict[str, dict[str, Any]] = {
    "mixtral": {"num_local_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 32},
    "qwen2_moe": {
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 64,
    },
    "qwen3_moe": {
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "head_dim": 16,
    },
    "olmoe": {
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "intermediate_size": 32,
        "eos_token_id": 2,  # OLMoE's default (50279) is outside the tiny vocabulary
    },
    "deepseek_v3": {
        # Layer 0 dense (first_k_dense_replace), layers 1-2 MoE with one shared
        # expert; routing limited to the best 1 of 2 expert groups; MLA attention.
        "num_hidden_layers": 3,
        "num_key_value_heads": 4,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "n_shared_experts": 1,
        "first_k_dense_replace": 1,
        "n_group": 2,
        "topk_group": 1,
        "q_lora_rank": 32,
        "kv_lora_rank": 32,
        "qk_rope_head_dim": 8,
        "qk_nope_head_dim": 8,
        "v_head_dim": 16,
        "head_dim": 8,
    },
}
"""Tiny configs of the MoE architectures the transformers backend is tested with
(transformers model types): 8 experts, 2 per token, at most 3 layers."""


def tiny_moe_lm(
    architecture: str = "mixtral",
    *,
    vocab_size: int = 263,
    seed: int = 0,
    experts_implementation: str | None = None,
    **config: Any,
) -> Any:
    """A small MoE causal LM of ``architecture`` (a key of :data:`TINY_MOE_CONFIGS`)
    with random weights, in float32 on the CPU, its experts running
    ``experts_implementation`` (default:
    :func:`goa.inference.moe.choose_experts_implementation`)."""
    from goa.inference.moe import choose_experts_implementation

    if architecture not in TINY_MOE_CONFIGS:
        raise ValueError(f"no tiny MoE config for {architecture!r}: {', '.join(TINY_MOE_CONFIGS)}")
    implementation = experts_implementation or choose_experts_implementation("cpu", "float32")
    settings = {**TINY_MOE_CONFIGS[architecture], **config}
    return tiny_causal_lm(
        architecture,
        vocab_size=vocab_size,
        seed=seed,
        experts_implementation=implementation,
        **settings,
    )


def tiny_moe_hf_model(
    name: str = "tiny-moe",
    *,
    architecture: str = "mixtral",
    chat_template: bool = True,
    max_batch: int = 64,
    seed: int = 0,
    experts_implementation: str | None = None,
) -> Any:
    """A ready :class:`~goa.inference.hf_model.HFModel` of a tiny random MoE model."""
    from goa.inference.hf_model import HFModel

    tokenizer = tiny_tokenizer(chat_template=chat_template)
    model = tiny_moe_lm(
        architecture,
        vocab_size=len(tokenizer),
        seed=seed,
        experts_implementation=experts_implementation,
    )
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return HFModel(model, tokenizer, name=name, max_batch=max_batch)
