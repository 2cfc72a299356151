"""Computed GPU-memory estimates for docs/memory.md: arithmetic, not measurements.

    python scripts/memory_estimate.py            # the tables of docs/memory.md

Parameter counts come from the models' published configs (hidden size, layers, MLP width,
attention heads, vocabulary, tied embeddings). Bytes per parameter:

- weights: 4 (float32) or 2 (bfloat16); QLoRA's NF4 with double quantisation 4.127 bits on the
  linear layers (Dettmers et al. 2023), the embeddings and the output head stay in bf16;
- full fine-tuning, one GPU, weights loaded in bf16 (align's --bf16): weights 2 + gradients 2
  + AdamW's two moments in the parameters' dtype 4 = 8 bytes/param (16 in float32);
- full fine-tuning under DeepSpeed with bf16: bf16 weights 2 + bf16 gradients 2 + fp32 master
  weights 4 + fp32 Adam moments 8 = 16 bytes/param (the ZeRO paper's 2 + 2 + 12); ZeRO-2
  divides the gradients and the 12 optimizer bytes over the GPUs, ZeRO-3 all 16;
- LoRA adapters (fp32 weights, gradients and Adam moments): 16 bytes per adapter parameter.

Activations, with gradient checkpointing, per token of a micro-batch: the saved input of every
layer (layers x hidden x 2 bytes), the vocabulary logits in bf16 plus their float32 log-softmax
and its gradient (vocab x 10 bytes; reward models have no vocabulary head) and one layer's
recomputed MLP (3 x MLP width x 2 bytes). Generation keeps a KV cache of layers x KV heads x
head size x 2 (keys, values) x 2 bytes per token. Add ~1.5 GB for the CUDA context and the
allocator's fragmentation. The per-recipe totals at the end use these rules.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9


@dataclass(frozen=True)
class Arch:
    """The shape of a decoder-only transformer, enough to count its parameters."""

    name: str
    hidden: int
    layers: int
    mlp: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    qkv_bias: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of every linear layer of one block (q, k, v, o, gate, up, down)."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        return [(h, h), (h, kv), (h, kv), (h, h), (h, self.mlp), (h, self.mlp), (self.mlp, h)]

    @property
    def linear_params(self) -> int:
        per_block = sum(i * o for i, o in self.linear_shapes())
        if self.qkv_bias:
            per_block += self.hidden + 2 * self.kv_heads * self.head_dim
        return per_block * self.layers

    @property
    def embedding_params(self) -> int:
        """Input embedding plus output head (counted once when tied)."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        norms = (2 * self.layers + 1) * self.hidden
        return self.linear_params + self.embedding_params + norms

    def lora_params(self, r: int = 8) -> int:
        """LoRA rank r on every linear layer of every block (--lora-target-modules all-linear)."""
        return r * sum(i + o for i, o in self.linear_shapes()) * self.layers


MODELS = [
    Arch("Qwen2.5-0.5B", 896, 24, 4864, 14, 2, 151936, tied=True, qkv_bias=True),
    Arch("Qwen2.5-1.5B", 1536, 28, 8960, 12, 2, 151936, tied=True, qkv_bias=True),
    Arch("Qwen2.5-7B", 3584, 28, 18944, 28, 4, 152064, tied=False, qkv_bias=True),
    Arch("Llama-3.1-8B", 4096, 32, 14336, 32, 8, 128256, tied=False, qkv_bias=False),
]
NF4_BYTES = 4.127 / 8  # NF4 + double-quantised constants, per quantised parameter


def weights_gb(m: Arch) -> dict[str, float]:
    """Memory of the weights alone, by storage."""
    rest = m.params - m.linear_params  # embeddings, head, norms stay in bf16 under QLoRA
    return {"fp32": 4 * m.params / GB, "bf16": 2 * m.params / GB,
            "nf4": (NF4_BYTES * m.linear_params + 2 * rest) / GB}


def training_gb(m: Arch, gpus: int = 8) -> dict[str, float]:
    """Weights + gradients + optimizer states per GPU, before activations."""
    p = m.params
    lora = 16 * m.lora_params() / GB
    w = weights_gb(m)
    return {
        "full fp32 (1 GPU)": 16 * p / GB,
        "full bf16 (1 GPU)": 8 * p / GB,
        "ZeRO-2 bf16 (per GPU)": (2 + 14 / gpus) * p / GB,
        "ZeRO-3 bf16 (per GPU)": 16 * p / gpus / GB,
        "LoRA r=8 bf16 base": w["bf16"] + lora,
        "QLoRA r=8 NF4 base": w["nf4"] + lora,
    }


OVERHEAD_GB = 1.5  # CUDA context, allocator fragmentation


def activation_mb_per_token(m: Arch, lm_head: bool = True) -> float:
    """Activation memory per token of a micro-batch, with gradient checkpointing (MB)."""
    saved = m.layers * m.hidden * 2
    logits = m.vocab * 10 if lm_head else 0
    recompute = 3 * m.mlp * 2
    return (saved + logits + recompute) / 1e6


def kv_kb_per_token(m: Arch) -> float:
    """KV-cache memory per generated or prompt token (KB)."""
    return m.layers * m.kv_heads * m.head_dim * 2 * 2 / 1e3


def classifier_params(m: Arch) -> int:
    """A sequence classifier on the same backbone: no vocabulary head (a 1-output score head)."""
    return m.params - (0 if m.tied else m.vocab * m.hidden)


def recipes() -> list[tuple[str, float, float]]:
    """(recipe, model + optimizer GB, activations GB) per GPU, at 1024-token sequences."""
    q7, q15 = MODELS[2], MODELS[1]
    lora7 = training_gb(q7)["LoRA r=8 bf16 base"]
    qlora7 = training_gb(q7)["QLoRA r=8 NF4 base"]
    ad7 = 16 * q7.lora_params() / GB
    act7 = activation_mb_per_token(q7) / 1e3  # GB per token
    rm_act7 = activation_mb_per_token(q7, lm_head=False) / 1e3
    rm7_bf16 = 2 * classifier_params(q7) / GB
    rm7_nf4 = (NF4_BYTES * q7.linear_params + 2 * (classifier_params(q7) - q7.linear_params)) / GB
    grpo_act = 2 * (1024 * (q7.layers * q7.hidden * 2) + 512 * q7.vocab * 10) / GB  # 2 completions
    ppo_seq = 512 + 128
    lora15 = training_gb(q15)["LoRA r=8 bf16 base"]
    z = training_gb(q7)
    return [
        ("dpo/cpo/orpo/simpo/kto LoRA (1 pair = 2 sequences)", lora7, 2 * 1024 * act7),
        ("same, QLoRA", qlora7, 2 * 1024 * act7),
        ("sft LoRA (2 sequences)", lora7, 2 * 1024 * act7),
        ("sft QLoRA", qlora7, 2 * 1024 * act7),
        ("rm LoRA (2 pairs = 4 sequences)", rm7_bf16 + ad7, 4 * 1024 * rm_act7),
        ("rm QLoRA", rm7_nf4 + ad7, 4 * 1024 * rm_act7),
        ("grpo/rloo LoRA (2 completions; logits on the completion only)", lora7, grpo_act),
        ("grpo/rloo QLoRA", qlora7, grpo_act),
        ("ppo LoRA, 7B policy + 1.5B reward model/critic (1 sequence)", lora7 + lora15,
         ppo_seq * act7 + 8 * ppo_seq * kv_kb_per_token(q7) / 1e6),
        ("ppo QLoRA, 7B policy + 7B reward model/critic (1 sequence)", qlora7 + rm7_nf4 + ad7,
         ppo_seq * act7 + 8 * ppo_seq * kv_kb_per_token(q7) / 1e6),
        ("ZeRO-2 sft (4 sequences)", z["ZeRO-2 bf16 (per GPU)"], 4 * 1024 * act7),
        ("ZeRO-3 sft", z["ZeRO-3 bf16 (per GPU)"] + 0.5, 4 * 1024 * act7),
        ("ZeRO-2 dpo (2 pairs) + bf16 reference copy", z["ZeRO-2 bf16 (per GPU)"]
         + weights_gb(q7)["bf16"], 4 * 1024 * act7),
        ("ZeRO-3 dpo + sharded reference", z["ZeRO-3 bf16 (per GPU)"] + 0.5
         + weights_gb(q7)["bf16"] / 8, 4 * 1024 * act7),
        ("ZeRO-3 dpo over 2 x 8 GPUs (multinode)", 16 * q7.params / 16 / GB + 0.5
         + weights_gb(q7)["bf16"] / 16, 4 * 1024 * act7),
        ("ZeRO-2 rm (4 pairs = 8 sequences)", (2 + 14 / 8) * classifier_params(q7) / GB,
         8 * 1024 * rm_act7),
        ("ZeRO-3 rm", 16 * classifier_params(q7) / 8 / GB + 0.5, 8 * 1024 * rm_act7),
        ("ZeRO-2 grpo (8 completions) + bf16 reference copy", z["ZeRO-2 bf16 (per GPU)"]
         + weights_gb(q7)["bf16"], 4 * grpo_act),
        # ZeRO-3 peaks while generating: its shard plus the gathered bf16 weights and the cache
        ("ZeRO-3 grpo, generating (weights gathered)", z["ZeRO-3 bf16 (per GPU)"]
         + weights_gb(q7)["bf16"] * (1 + 1 / 8), 16 * 1024 * kv_kb_per_token(q7) / 1e6),
    ]


def main() -> None:
    print("| model | parameters | LoRA r=8 parameters | fp32 weights | bf16 weights "
          "| NF4 weights |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m in MODELS:
        w = weights_gb(m)
        print(f"| {m.name} | {m.params / 1e9:.2f}B | {m.lora_params() / 1e6:.1f}M | "
              f"{w['fp32']:.1f} GB | {w['bf16']:.1f} GB | {w['nf4']:.1f} GB |")
    print()
    modes = list(training_gb(MODELS[0]))
    print("| model | " + " | ".join(modes) + " |")
    print("| --- |" + " --- |" * len(modes))
    for m in MODELS:
        t = training_gb(m)
        print(f"| {m.name} | " + " | ".join(f"{t[k]:.1f} GB" for k in modes) + " |")
    print()
    print("| model | activations per token (checkpointing) | KV cache per token |")
    print("| --- | --- | --- |")
    for m in MODELS:
        rm_mb = activation_mb_per_token(m, lm_head=False)
        print(f"| {m.name} | {activation_mb_per_token(m):.2f} MB (reward model: {rm_mb:.2f} MB) "
              f"| {kv_kb_per_token(m):.0f} KB |")
    print()
    print("| recipe (Qwen2.5-7B, 1024 tokens) | model + optimizer | activations "
          "| + overhead = total |")
    print("| --- | --- | --- | --- |")
    for name, states, acts in recipes():
        total = states + acts + OVERHEAD_GB
        print(f"| {name} | {states:.1f} GB | {acts:.1f} GB | ~{total:.0f} GB |")


if __name__ == "__main__":
    main()
