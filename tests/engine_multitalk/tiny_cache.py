"""A complete model cache in the published layout, with tiny random models, for end-to-end engine runs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from multitalk.runner.engines.multitalk import model_files

TEXT_DIM = 32
WORDS = [
    "a",
    "the",
    "man",
    "woman",
    "two",
    "people",
    "talk",
    "talks",
    "to",
    "camera",
    "in",
    "bright",
    "studio",
    "blurry",
    "low",
    "quality",
    "face",
]


def build(root: Path) -> Path:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        PreTrainedTokenizerFast,
        UMT5Config,
        UMT5EncoderModel,
        Wav2Vec2Config,
        Wav2Vec2Model,
    )

    from multitalk.runner.engines.multitalk.audio_adapter import MultiTalkAudioAdapter

    torch.manual_seed(0)
    wan_dir = root / model_files.DIFFUSERS_DIR
    wan = WanTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=36,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        image_dim=32,
        added_kv_proj_dim=32,
    )
    wan.save_pretrained(wan_dir / "transformer")
    AutoencoderKLWan(base_dim=8, dim_mult=[1, 2, 2, 2], num_res_blocks=1).save_pretrained(wan_dir / "vae")
    UMT5EncoderModel(
        UMT5Config(vocab_size=64, d_model=TEXT_DIM, d_kv=16, d_ff=64, num_layers=1, num_heads=2)
    ).save_pretrained(wan_dir / "text_encoder")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(wan_dir / "tokenizer")
    CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        )
    ).save_pretrained(wan_dir / "image_encoder")
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(
        wan_dir / "image_processor"
    )
    adapter = MultiTalkAudioAdapter(
        num_layers=2,
        dim=32,
        num_heads=2,
        wav2vec_layers=12,
        wav2vec_dim=16,
        intermediate_dim=16,
        output_dim=16,
        context_tokens=4,
    )
    # Published key naming: blocks.N.audio_cross_attn.* / blocks.N.norm_x.* / audio_proj.*
    published = {k.replace("audio_blocks.", "blocks.", 1): v.contiguous() for k, v in adapter.state_dict().items()}
    (root / "MeiGen-MultiTalk").mkdir(parents=True)
    save_file(published, str(root / model_files.MULTITALK_FILE))
    # InfiniteTalk's weights (dubbing): the same audio geometry, other values, one file per speaker set.
    for variant, relative in model_files.INFINITETALK_FILES.items():
        torch.manual_seed(11 if variant == "single" else 12)
        for value in adapter.parameters():
            value.data.add_(0.02 * torch.randn_like(value))
        state = {k.replace("audio_blocks.", "blocks.", 1): v.contiguous() for k, v in adapter.state_dict().items()}
        (root / model_files.INFINITETALK_DIR / relative).parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(root / model_files.INFINITETALK_DIR / relative))
    Wav2Vec2Model(
        Wav2Vec2Config(
            hidden_size=16,
            num_hidden_layers=12,
            num_attention_heads=2,
            intermediate_size=32,
            conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
        )
    ).save_pretrained(root / model_files.WAV2VEC_DIR)
    # A speed LoRA in the original Wan naming, as FusionX / lightx2v ship theirs.
    lora = {}
    g = torch.Generator().manual_seed(5)
    for block in range(2):
        prefix = f"diffusion_model.blocks.{block}.self_attn.q"
        lora[f"{prefix}.lora_down.weight"] = torch.randn(2, 32, generator=g) * 0.01
        lora[f"{prefix}.lora_up.weight"] = torch.randn(32, 2, generator=g) * 0.01
        lora[f"{prefix}.alpha"] = torch.tensor(2.0)
    (root / "loras").mkdir()
    save_file(lora, str(root / "loras" / "speed.safetensors"))
    (root / "README.json").write_text(json.dumps({"note": "tiny random models for tests"}))
    return root
