"""The `multitalk` engine: MeiGen MultiTalk (Wan2.1-I2V-14B + audio adapter + wav2vec2) on a GPU.

Importing this module needs neither torch nor diffusers, so `multitalk-runner check` can say
precisely what is missing; the heavy imports happen in load().

Its MULTITALK_* environment settings (offload, resolution, colour matching, guidance,
device) are typed in env_settings.py; docs/engines/multitalk.md lists them.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from multitalk.runner.engines.base import Availability, Engine, EngineInfo, Image, ProgressFn, RenderInputs
from multitalk.runner.errors import EngineUnavailable, InvalidInput
from multitalk.runner.request import RenderRequest

from . import model_files
from .env_settings import EngineMisconfigured, MultiTalkSettings, load_settings

MODEL_FPS = 25
CLIP_FRAMES = 81  # the window MultiTalk was trained on
MOTION_FRAMES = 25
NEGATIVE_PROMPT = "blurry, low quality, distorted face, deformed mouth, extra fingers, static picture, subtitles"
REQUIRED_PACKAGES = ("torch", "diffusers", "transformers", "safetensors", "accelerate", "pyloudnorm", "skimage")


def generation_size(width: int, height: int, area: int) -> tuple[int, int]:
    """(height, width), multiples of 16, near the requested aspect ratio with about `area` pixels."""
    ratio = height / width
    gen_h = max(16, round(math.sqrt(area * ratio) / 16) * 16)
    gen_w = max(16, round(math.sqrt(area / ratio) / 16) * 16)
    return gen_h, gen_w


def window_plan(frames_25: int) -> tuple[int, bool]:
    """(frame_num, streaming): one 4n+1 window up to 81 frames, else 81-frame windows carrying 25 frames."""
    if frames_25 <= CLIP_FRAMES:
        return max(5, 4 * math.ceil((frames_25 - 1) / 4) + 1), False
    return CLIP_FRAMES, True


def resample_indices(frames: int, fps: int, available: int) -> list[int]:
    """Index into the 25 fps frames for each output frame at `fps`."""
    return [min(available - 1, math.floor(i * MODEL_FPS / fps + 0.5)) for i in range(frames)]


class MultiTalkEngine(Engine):
    name = "multitalk"

    def __init__(self, model_dir: Path) -> None:
        super().__init__(model_dir)
        self._misconfigured: EngineMisconfigured | None = None
        try:
            settings = load_settings()
        except EngineMisconfigured as exc:
            self._misconfigured, settings = exc, MultiTalkSettings.model_construct()
        self.settings = settings
        self.offload = settings.offload
        self.area = settings.generation_area
        self.color_strength = settings.color_match
        self.apg = settings.apg
        self.device_name = settings.device
        self.strict_geometry = settings.check_geometry
        self._files: model_files.ModelFiles | None = None
        self._state: dict[str, Any] = {}

    def availability(self) -> Availability:
        if self._misconfigured is not None:
            return Availability(False, self._misconfigured.message, misconfigured=True)
        missing = [p for p in REQUIRED_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            return Availability(False, f"not installed: {', '.join(missing)} (install the multitalk extra)")
        import torch

        files = model_files.locate(self.model_dir, self.strict_geometry)
        details: dict[str, object] = {"models": files.summary(), "offload": self.offload, "device": self.device_name}
        reasons = []
        if self.device_name == "cuda" and not torch.cuda.is_available():
            reasons.append("no CUDA device (torch sees none); the multitalk engine needs a GPU")
        if not files.ok:
            reasons.append("model files missing or mismatched: " + "; ".join(files.problems))
        if reasons:
            return Availability(False, "; ".join(reasons), details)
        return Availability(True, "", details)

    def validate(self, request: RenderRequest) -> None:
        if request.image is None:
            raise InvalidInput("the multitalk engine animates a reference image; none was given", "image")
        for i, lora in enumerate(request.sampling.loras):
            if not (self.model_dir / lora.path).is_file():
                raise InvalidInput(f"{lora.path} is not in the model cache", f"sampling.loras[{i}].path")
        if len(request.speakers) == 2:
            boxes = [s.bbox for s in request.speakers]
            if (boxes[0] is None) != (boxes[1] is None):
                raise InvalidInput(
                    "give a bbox for both speakers or for neither (default: left and right halves)", "speakers[].bbox"
                )

    def load(self) -> None:
        import torch

        from .audio_features import AudioEncoder
        from .encoders import Wan21Encoders
        from .loader import load_transformer
        from .pipeline import MultiTalkPipeline

        files = model_files.locate(self.model_dir, self.strict_geometry)
        if not files.ok:
            raise EngineUnavailable("model files missing or mismatched: " + "; ".join(files.problems), "engine")
        device = torch.device(self.device_name)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        on_gpu = self.offload == "none"
        transformer = load_transformer(files, dtype, device if on_gpu else "cpu")
        if self.offload == "sequential":
            # Embedders, head and audio projection stay on the GPU; the blocks visit it one at a time.
            for name, child in transformer.wan.named_children():
                if name != "blocks":
                    child.to(device)
            transformer.wan.scale_shift_table.data = transformer.wan.scale_shift_table.data.to(device)
            transformer.audio.audio_proj.to(device)
            transformer.block_device = device
        encoders = Wan21Encoders(files, device, dtype)
        if on_gpu:
            for module in encoders.modules().values():
                module.to(device)
        assert files.wav2vec is not None
        self._files = files
        self._state = {
            "torch": torch,
            "device": device,
            "dtype": dtype,
            "transformer": transformer,
            "encoders": encoders,
            "audio": AudioEncoder(files.wav2vec, device),
            "pipeline_cls": MultiTalkPipeline,
        }

    def _residency(self, active: str) -> None:
        """Offload: only `active` (an encoder name or 'transformer') is on the GPU while it runs.

        With sequential offload the transformer manages its own blocks and is never moved whole.
        """
        device = self._state["device"]
        if self.offload == "none" or device.type != "cuda":
            return
        modules: dict[str, Any] = dict(self._state["encoders"].modules())
        if self.offload == "model":
            modules["transformer"] = self._state["transformer"]
        for name, module in modules.items():
            if name != active:
                module.to("cpu")
        if active in modules:
            modules[active].to(device)
        self._state["torch"].cuda.empty_cache()

    def prepare(self, inputs: RenderInputs, progress: ProgressFn) -> EngineInfo:
        from .audio_features import loudness_normalize
        from .loader import merge_lora

        state = self._state
        loras = [(lora.path, lora.scale) for lora in inputs.request.sampling.loras]
        merged = state.setdefault("loras", None)
        if merged is not None and merged != loras:
            raise RuntimeError("this engine already merged other LoRAs into its weights; use a fresh runner process")
        if merged is None:
            for path, scale in loras:
                merge_lora(state["transformer"], self.model_dir / path, scale)
            state["loras"] = loras
        features = []
        for i, speech in enumerate(inputs.speech):
            features.append(state["audio"](loudness_normalize(speech)))
            progress((i + 1) / len(inputs.speech))
        state["features"] = features
        state["masks"] = self._person_masks(inputs) if len(inputs.speech) == 2 else None
        shape = (len(features), *features[0].shape)
        device = state["device"]
        return EngineInfo(
            device=str(state["torch"].cuda.get_device_name(device)) if device.type == "cuda" else "cpu",
            precision="bf16" if state["dtype"] == state["torch"].bfloat16 else "fp32",
            models=("Wan2.1-I2V-14B-480P", "MeiGen-MultiTalk", "chinese-wav2vec2-base"),
            feature_shape=tuple(int(x) for x in shape),
        )

    def frames(self, inputs: RenderInputs, progress: ProgressFn) -> Iterator[Image]:
        from PIL import Image as PILImage
        from PIL import ImageOps

        from .pipeline import Settings
        from .sampler import Guidance
        from .teacache import TeaCache

        state, torch = self._state, self._state["torch"]
        if inputs.image is None:
            raise InvalidInput("the multitalk engine needs a reference image", "image")
        req, sampling = inputs.request, inputs.request.sampling
        gen_h, gen_w = generation_size(inputs.width, inputs.height, self.area)
        portrait = ImageOps.fit(PILImage.fromarray(inputs.image), (gen_w, gen_h), PILImage.Resampling.BICUBIC)
        image = torch.from_numpy(np.asarray(portrait).copy()).permute(2, 0, 1).float() / 255 * 2 - 1
        masks = state.get("masks")
        frames_25 = max(1, math.ceil(inputs.duration_seconds * MODEL_FPS))
        frame_num, streaming = window_plan(frames_25)
        features = [self._padded(f, max(frame_num + 1, frames_25)) for f in state["features"]]
        settings = Settings(
            frame_num=frame_num,
            motion_frames=MOTION_FRAMES,
            streaming=streaming,
            max_frames=max(frames_25, frame_num + 1),
            steps=sampling.steps,
            shift=sampling.shift,
            seed=sampling.seed,
            guidance=Guidance(sampling.text_guidance, sampling.audio_guidance, apg=self.apg),
            color_strength=self.color_strength,
            negative_prompt=NEGATIVE_PROMPT,
        )
        transformer = state["transformer"]
        transformer.teacache = TeaCache(sampling.tea_cache, sampling.steps) if sampling.tea_cache > 0 else None
        encoders = state["encoders"].as_encoders()
        pipeline = state["pipeline_cls"](transformer, encoders, state["device"], self._residency)
        wanted = resample_indices(inputs.frames, inputs.fps, frames_25)
        buffer: list[Image] = []  # generated 25 fps frames from index `first` on
        first, out = 0, 0
        chunks = pipeline.generate(
            image, features, req.prompt, settings, masks, lambda done, total: progress(done / total)
        )
        for chunk in chunks:
            pixels = ((chunk.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
            buffer.extend(pixels)
            while out < len(wanted) and wanted[out] < first + len(buffer):
                frame = PILImage.fromarray(buffer[wanted[out] - first]).resize(
                    (inputs.width, inputs.height), PILImage.Resampling.LANCZOS
                )
                yield np.asarray(frame, dtype=np.uint8)
                out += 1
            if out >= len(wanted):
                break
            # Frames before the next wanted one are never needed again: memory stays flat in the length.
            drop = wanted[out] - first
            del buffer[:drop]
            first += drop
        if out < len(wanted):
            raise RuntimeError(f"generated {first + len(buffer)} frames at 25 fps, needed {wanted[-1] + 1}")

    def _person_masks(self, inputs: RenderInputs) -> Any:
        """Latent-grid masks of the two persons; a bbox that covers no token of the frame is refused."""
        from .person_masks import image_masks, latent_masks, token_masks

        gen_h, gen_w = generation_size(inputs.width, inputs.height, self.area)
        boxes = [s.bbox for s in inputs.request.speakers]
        source = image_masks(inputs.height, inputs.width, 2, boxes)
        masks = latent_masks(source, gen_h, gen_w, gen_h // 8, gen_w // 8)
        tokens = token_masks(masks, gen_h // 16, gen_w // 16)
        for i, box in enumerate(boxes):
            if box is not None and float(tokens[i].sum()) == 0:
                raise InvalidInput(
                    "the box covers no part of the video frame the model sees (too small, or outside after the "
                    "image is fitted to the video size); bbox is [top, left, bottom, right] in pixels of the "
                    "image, rows first",
                    f"speakers[{i}].bbox",
                )
        return masks.to(self._state["device"])

    @staticmethod
    def _padded(features: Any, length: int) -> Any:
        """At least `length` feature frames (more than one window, and the whole video), time-reversed tail."""
        import torch

        while features.shape[0] < length:
            missing = min(features.shape[0], length - features.shape[0])
            features = torch.cat([features, torch.flip(features[-missing:], dims=[0])])
        return features
