"""The `multitalk` engine: MeiGen MultiTalk (Wan2.1-I2V-14B + audio adapter + wav2vec2) on a GPU.

A request with `sourceVideo` (dubbing) runs MeiGen's InfiniteTalk instead: the same
transformer with InfiniteTalk's audio weights (single/ or multi/ by speaker count), each
window conditioned on the source video's frame at its start (pipeline.py).

Importing this module needs neither torch nor diffusers, so `multitalk-runner check` can say
precisely what is missing; the heavy imports happen in load().

Its MULTITALK_* environment settings (offload, resolution, colour matching, guidance,
device) are typed in env_settings.py; docs/engines/multitalk.md lists them. The rank
environment (WORLD_SIZE, MASTER_ADDR, MASTER_PORT, set by the operator for runner.gpus > 1)
makes this process rank 0, which spawns the other ranks when the engine loads.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multitalk.runner.engines.base import Availability, Engine, EngineInfo, Image, ProgressFn, RenderInputs
from multitalk.runner.errors import EngineUnavailable, ExitCode, InvalidInput
from multitalk.runner.request import RenderRequest

from . import model_files
from .env_settings import EngineMisconfigured, MultiTalkSettings, load_settings
from .parallel_plan import Rendezvous

MODEL_FPS = 25
CLIP_FRAMES = 81  # the window MultiTalk was trained on
MOTION_FRAMES = 25
INFINITETALK_MOTION_FRAMES = 9  # InfiniteTalk's published default (generate_infinitetalk.py --motion_frame)
NEGATIVE_PROMPT = "blurry, low quality, distorted face, deformed mouth, extra fingers, static picture, subtitles"
REQUIRED_PACKAGES = (
    "torch",
    "torchao",
    "diffusers",
    "transformers",
    "safetensors",
    "accelerate",
    "pyloudnorm",
    "skimage",
)
# auto precision: bf16 when its weights leave this much of the GPU for activations and encoders.
AUTO_BF16_HEADROOM_BYTES = 24 * 2**30


class DubbingWeightsMissing(InvalidInput):
    """The cache lacks InfiniteTalk's weights for this request's speakers.

    An InvalidInput, so `auto` skips the engine for this request (as for any request an
    engine cannot render) and tries the next; asked for by name, exit 4 (the cache, not the
    input, is at fault; permanent, so the Job does not retry).
    """

    exit_code = ExitCode.ENGINE_UNAVAILABLE


def memory_plan(
    requested: str, bf16_weight_bytes: int, gpu_bytes: int | None, fp8_supported: bool, offload: str, ranks: int
) -> tuple[str, bool]:
    """(precision, shard the blocks over the ranks with FSDP) for a render.

    bf16 fits when its weights (replicated, or 1/ranks of them sharded) leave
    AUTO_BF16_HEADROOM_BYTES of the GPU. auto: bf16 replicated if it fits, else bf16 sharded
    over several ranks if that fits, else fp8 where the GPU has fp8 matmuls, else int8.
    Quantised weights are never sharded (they are half the size; FSDP does not carry torchao's
    tensors). No GPU figure (CPU) or an offload mode: bf16, replicated.
    """
    if gpu_bytes is None or offload != "none":
        return ("bf16" if requested == "auto" else requested), False
    replicated = bf16_weight_bytes + AUTO_BF16_HEADROOM_BYTES <= gpu_bytes
    sharded = ranks > 1 and bf16_weight_bytes // ranks + AUTO_BF16_HEADROOM_BYTES <= gpu_bytes
    if requested == "bf16":
        return "bf16", ranks > 1 and not replicated
    if requested != "auto":
        return requested, False
    if replicated or sharded:
        return "bf16", not replicated
    return ("fp8" if fp8_supported else "int8"), False


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


def source_index(model_frame: int, fps: int) -> int:
    """The output frame (at `fps`) shown at the time of a 25 fps model frame: a dub's conditioning frame."""
    return math.floor(model_frame * fps / MODEL_FPS + 0.5)


def resample_indices(frames: int, fps: int, available: int) -> list[int]:
    """Index into the 25 fps frames for each output frame at `fps`."""
    return [min(available - 1, math.floor(i * MODEL_FPS / fps + 0.5)) for i in range(frames)]


@dataclass
class _Cursor:
    """Where frames() is: the window being drained into output frames, and what follows it."""

    wanted: list[int]  # 25 fps frame of each output frame
    out: int = 0  # output frames yielded
    chunk: Any = None  # [3, n, H, W] float: the frames of the window being drained
    chunk_first: int = 0  # its first frame's 25 fps index
    carry: Any = None  # the pipeline's WindowCarry for the next window; None after the last


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
        self.rendezvous = Rendezvous()
        try:
            self.rendezvous = Rendezvous.from_env(os.environ, "cuda" if self.device_name == "cuda" else "cpu")
        except ValueError as exc:  # the operator sets these: a bad value is configuration, not chance
            self._misconfigured = self._misconfigured or EngineMisconfigured(str(exc), "engine")
        self._files: model_files.ModelFiles | None = None
        self._state: dict[str, Any] = {}
        # Resuming (streaming): set by prepare(), and while frames() runs.
        self._fingerprint = ""
        self._motion_frames: int | None = None
        self._video_size = (0, 0)
        self._cursor: _Cursor | None = None

    def availability(self) -> Availability:
        if self._misconfigured is not None:
            return Availability(False, self._misconfigured.message, misconfigured=True)
        missing = [p for p in REQUIRED_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            return Availability(False, f"not installed: {', '.join(missing)} (install the multitalk extra)")
        import torch

        from .quantization import supported_precisions

        files = model_files.locate(self.model_dir, self.strict_geometry)
        details: dict[str, object] = {
            "models": files.summary(),
            "offload": self.offload,
            "device": self.device_name,
            "ranks": self.rendezvous.world,
        }
        if self.device_name == "cpu" or torch.cuda.is_available():
            device = torch.device("cpu") if self.device_name == "cpu" else torch.device("cuda", 0)
            details["precisions"] = supported_precisions(device)
        reasons = []
        if self.device_name == "cuda" and not torch.cuda.is_available():
            reasons.append("no CUDA device (torch sees none); the multitalk engine needs a GPU")
        elif self.device_name == "cuda" and torch.cuda.device_count() < self.rendezvous.world:
            reasons.append(
                f"WORLD_SIZE={self.rendezvous.world} ranks but torch sees {torch.cuda.device_count()} GPU(s); "
                "one GPU per rank (spec.runner.gpus sets both)"
            )
        if not files.ok:
            reasons.append("model files missing or mismatched: " + "; ".join(files.problems))
        if reasons:
            return Availability(False, "; ".join(reasons), details)
        return Availability(True, "", details)

    def validate(self, request: RenderRequest) -> None:
        if request.image is None and request.source_video is None:
            raise InvalidInput("the multitalk engine animates a reference image; none was given", "image")
        if request.source_video is not None:
            files = model_files.locate(self.model_dir, self.strict_geometry)
            if files.audio_weights(True, len(request.speakers)) is None:
                variant = model_files.infinitetalk_variant(len(request.speakers))
                raise DubbingWeightsMissing(
                    f"dubbing needs MeiGen-AI/InfiniteTalk's {variant}/infinitetalk.safetensors in the model cache: "
                    + "; ".join(p for p in files.dubbing_problems if f"/{variant}/" in p),
                    "sourceVideo",
                )
        for i, lora in enumerate(request.sampling.loras):
            if not (self.model_dir / lora.path).is_file():
                raise InvalidInput(f"{lora.path} is not in the model cache", f"sampling.loras[{i}].path")
        if len(request.speakers) == 2:
            boxes = [s.bbox for s in request.speakers]
            if (boxes[0] is None) != (boxes[1] is None):
                raise InvalidInput(
                    "give a bbox for both speakers or for neither (default: left and right halves)", "speakers[].bbox"
                )
        if request.sampling.precision == "fp8":  # refused before any download (exit 4: this hardware, not the input)
            import torch

            from .quantization import fp8_support

            fp8_ok, why = fp8_support(torch.device("cpu") if self.device_name == "cpu" else torch.device("cuda", 0))
            if not fp8_ok:
                raise EngineUnavailable(
                    f"precision fp8 is not supported here: {why}; use int8 or auto", "sampling.precision"
                )

    def load(self, request: RenderRequest) -> None:
        import torch

        from .audio_features import AudioEncoder
        from .denoiser import LocalDenoiser
        from .encoders import Wan21Encoders
        from .pipeline import MultiTalkPipeline
        from .workers import LoadSpec, WorkerPool, load_rank_transformer

        files = model_files.locate(self.model_dir, self.strict_geometry)
        if not files.ok:
            raise EngineUnavailable("model files missing or mismatched: " + "; ".join(files.problems), "engine")
        device = torch.device(self.device_name, 0) if self.device_name == "cuda" else torch.device("cpu")
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        precision, shard = self._memory_plan(request, files, device)
        spec = LoadSpec(
            model_dir=self.model_dir,
            strict_geometry=self.strict_geometry,
            precision=precision,
            loras=tuple((self.model_dir / lora.path, lora.scale) for lora in request.sampling.loras),
            offload=self.offload,
            shard=shard,
            dubbing=request.source_video is not None,
            persons=len(request.speakers),
        )
        state: dict[str, Any] = {
            "torch": torch,
            "device": device,
            "dtype": dtype,
            "precision": precision,
            "sharded": shard,
            "dubbing": spec.dubbing,
        }
        self._state = state
        if self.rendezvous.world > 1:
            from . import distributed

            # Workers first: they load their copies while this rank loads its own and the encoders.
            state["workers"] = WorkerPool(self.rendezvous, spec)
            distributed.join(self.rendezvous, 0)
        with torch.no_grad():
            transformer = load_rank_transformer(spec, device)  # with model offload: on the CPU until it runs
        encoders = Wan21Encoders(files, device, dtype)
        if self.offload == "none":
            for module in encoders.modules().values():
                module.to(device)
        if self.rendezvous.world > 1:
            state["denoiser"] = distributed.ParallelDenoiser(distributed.RankState(transformer, device))
        else:
            state["denoiser"] = LocalDenoiser(transformer)
        assert files.wav2vec is not None
        self._files = files
        state.update(
            transformer=transformer,
            encoders=encoders,
            audio=AudioEncoder(files.wav2vec, device),
            pipeline_cls=MultiTalkPipeline,
        )

    def _memory_plan(self, request: RenderRequest, files: model_files.ModelFiles, device: Any) -> tuple[str, bool]:
        """Resolve `auto` and decide FSDP sharding (validate() already refused fp8 where it cannot run)."""
        import torch

        from .quantization import fp8_support

        fp8_ok, _ = fp8_support(device)
        requested = request.sampling.precision
        gpu_bytes = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
        bf16_bytes = files.transformer_bf16_bytes(request.source_video is not None, len(request.speakers))
        return memory_plan(requested, bf16_bytes, gpu_bytes, fp8_ok, self.offload, self.rendezvous.world)

    def close(self) -> None:
        state = self._state
        denoiser, workers = state.get("denoiser"), state.pop("workers", None)
        if workers is None:
            return
        from . import distributed

        try:
            if state.get("finished") and isinstance(denoiser, distributed.ParallelDenoiser):
                denoiser.stop()  # the workers wait for the next message: release them
                workers.close()
            else:  # failed mid-render: a worker may sit in a collective that rank 0 left
                workers.terminate()
        finally:
            distributed.leave()

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

        state = self._state
        features = []
        for i, speech in enumerate(inputs.speech):
            features.append(state["audio"](loudness_normalize(speech)))
            progress((i + 1) / len(inputs.speech))
        state["features"] = features
        state["masks"] = self._person_masks(inputs) if len(inputs.speech) == 2 else None
        self._plan_resume(inputs)
        shape = (len(features), *features[0].shape)
        device = state["device"]
        return EngineInfo(
            device=self._device_label(device),
            precision=state["precision"] if state["precision"] != "bf16" or device.type == "cuda" else "fp32",
            models=(
                "Wan2.1-I2V-14B-480P",
                "MeiGen-InfiniteTalk" if state.get("dubbing") else "MeiGen-MultiTalk",
                "chinese-wav2vec2-base",
            ),
            feature_shape=tuple(int(x) for x in shape),
        )

    def _device_label(self, device: Any) -> str:
        """'NVIDIA H100 80GB HBM3', '4 x NVIDIA H100 80GB HBM3 (FSDP)', 'cpu', '2 x cpu'."""
        name = str(self._state["torch"].cuda.get_device_name(device)) if device.type == "cuda" else "cpu"
        ranks = self.rendezvous.world
        label = f"{ranks} x {name}" if ranks > 1 else name
        return label + (" (FSDP)" if self._state.get("sharded") else "")

    def _plan(self, inputs: RenderInputs) -> tuple[int, int, bool, int]:
        """(25 fps frames, frame_num, streaming, motion_frames) of this render."""
        frames_25 = max(1, math.ceil(inputs.duration_seconds * MODEL_FPS))
        frame_num, streaming = window_plan(frames_25)
        motion = INFINITETALK_MOTION_FRAMES if inputs.source is not None else MOTION_FRAMES
        return frames_25, frame_num, streaming, motion

    def _settings(self, inputs: RenderInputs) -> Any:
        from .pipeline import Settings
        from .sampler import Guidance

        sampling = inputs.request.sampling
        frames_25, frame_num, streaming, motion = self._plan(inputs)
        return Settings(
            frame_num=frame_num,
            motion_frames=motion,
            streaming=streaming,
            max_frames=max(frames_25, frame_num + 1),
            steps=sampling.steps,
            shift=sampling.shift,
            tea_cache=sampling.tea_cache,
            seed=sampling.seed,
            guidance=Guidance(sampling.text_guidance, sampling.audio_guidance, apg=self.apg),
            color_strength=self.color_strength,
            negative_prompt=NEGATIVE_PROMPT,
        )

    def _plan_resume(self, inputs: RenderInputs) -> None:
        """Streaming renders are resumable, checkpointed where a window's new frames are drained.

        Window w (w >= 0) ends at 25 fps frame 81 + 56w and its last 25 frames are the next window's
        motion frames, so a checkpoint after output frames up to 25 fps frame 56(w+1) has only motion
        frames left to yield: window_frames is that step (frame_num - motion_frames) at the output
        rate, rounded up. It is exact at 25 and 50 fps; at other rates the checkpoints drift later
        through the windows, and a state then holds up to a window's new frames (resume_state.py).
        Clip mode (one window) has nothing to resume from.
        """
        from dataclasses import asdict

        from . import resume_state

        _, frame_num, streaming, motion = self._plan(inputs)
        self.resumable = streaming
        self.window_frames = math.ceil((frame_num - motion) * inputs.fps / MODEL_FPS)
        self._motion_frames, self._video_size = motion, (inputs.width, inputs.height)
        gen_h, gen_w = generation_size(inputs.width, inputs.height, self.area)
        held = self._state
        self._fingerprint = resume_state.fingerprint(
            {
                "settings": asdict(self._settings(inputs)),
                "generation": [gen_h, gen_w],
                "video": [inputs.width, inputs.height, inputs.fps, inputs.frames],
                "precision": held.get("precision"),
                "device": held["device"].type,
                "ranks": self.rendezvous.world,
                "sharded": held.get("sharded"),
                "dubbing": inputs.source is not None,
            }
        )

    def check_state(self, state: bytes, start: int) -> str | None:
        from .resume_state import StateError

        try:
            self._restored(state, start)
        except StateError as exc:
            return str(exc)
        return None

    def _restored(self, state: bytes, start: int) -> Any:
        """The StreamState to resume at output frame `start`; StateError when it is not this render's."""
        from . import resume_state

        torch = self._state["torch"]
        if self._motion_frames is None:
            raise resume_state.StateError("the engine has not prepared this render")
        size = generation_size(self._video_size[0], self._video_size[1], self.area)
        restored = resume_state.decode(state, self._fingerprint, self._motion_frames, size)
        if restored.yielded != start:
            raise resume_state.StateError(f"it continues after frame {restored.yielded}, not {start}")
        if restored.carry is not None:
            try:  # a wrong-sized RNG state would fail only once the next window draws its noise
                torch.Generator(device=self._state["device"]).set_state(restored.carry.rng)
            except (RuntimeError, ValueError) as exc:
                raise resume_state.StateError(f"its RNG state does not fit this device: {exc}") from None
        return restored

    def window_state(self) -> bytes:
        from . import resume_state

        cursor = self._cursor
        assert cursor is not None and self._motion_frames is not None, "window_state() outside frames()"
        chunk_end = cursor.chunk_first + cursor.chunk.shape[1]
        pending = cursor.wanted[cursor.out] if cursor.out < len(cursor.wanted) else chunk_end
        # From the first frame still to yield, and never fewer than the next window's motion frames.
        first = max(cursor.chunk_first, min(pending, chunk_end - self._motion_frames))
        tail = cursor.chunk[:, first - cursor.chunk_first :]
        return resume_state.encode(resume_state.StreamState(self._fingerprint, cursor.out, first, tail, cursor.carry))

    def frames(self, inputs: RenderInputs, progress: ProgressFn, start: int = 0, state: bytes = b"") -> Iterator[Image]:
        from PIL import Image as PILImage
        from PIL import ImageOps

        held, torch = self._state, self._state["torch"]
        if inputs.image is None:
            raise InvalidInput("the multitalk engine needs a reference image", "image")
        restored = self._restored(state, start) if start else None  # refused before any work
        req = inputs.request
        gen_h, gen_w = generation_size(inputs.width, inputs.height, self.area)

        def fitted(picture: Image) -> Any:
            """[3, gen_h, gen_w] in [-1, 1], cover-resized as the portrait is."""
            fit = ImageOps.fit(PILImage.fromarray(picture), (gen_w, gen_h), PILImage.Resampling.BICUBIC)
            return torch.from_numpy(np.asarray(fit).copy()).permute(2, 0, 1).float() / 255 * 2 - 1

        image = fitted(inputs.image)
        source = None
        if inputs.source is not None:
            frames_of = inputs.source

            def source(index: int) -> Any:
                """Model frame `index` (25 fps) of the source: the output frame shown at that time."""
                return fitted(frames_of.frame(source_index(index, inputs.fps)))

        masks = held.get("masks")
        frames_25, frame_num, _, _ = self._plan(inputs)
        features = [self._padded(f, max(frame_num + 1, frames_25)) for f in held["features"]]
        settings = self._settings(inputs)
        encoders = held["encoders"].as_encoders()
        pipeline = held["pipeline_cls"](held["denoiser"], encoders, held["device"], self._residency)
        cursor = _Cursor(resample_indices(inputs.frames, inputs.fps, frames_25))
        self._cursor = cursor
        buffer: list[Image] = []  # generated 25 fps frames from index `first` on
        first = 0

        def drained(chunk: Any, chunk_first: int, carry: Any) -> Iterator[Image]:
            """The output frames a window's frames complete (window_state() may be asked at any)."""
            nonlocal first
            cursor.chunk, cursor.chunk_first, cursor.carry = chunk, chunk_first, carry
            pixels = ((chunk.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
            buffer.extend(pixels)
            wanted = cursor.wanted
            while cursor.out < len(wanted) and wanted[cursor.out] < first + len(buffer):
                frame = PILImage.fromarray(buffer[wanted[cursor.out] - first]).resize(
                    (inputs.width, inputs.height), PILImage.Resampling.LANCZOS
                )
                cursor.out += 1  # before the yield: window_state() is asked while it is suspended
                yield np.asarray(frame, dtype=np.uint8)
            if cursor.out < len(wanted):
                # Frames before the next wanted one are never needed again: memory stays flat in the length.
                drop = wanted[cursor.out] - first
                del buffer[:drop]
                first += drop

        if restored is not None:
            cursor.out, first = start, restored.tail_first
            yield from drained(restored.tail, restored.tail_first, restored.carry)
        if restored is None or (restored.carry is not None and cursor.out < len(cursor.wanted)):
            chunks = pipeline.generate(
                image,
                features,
                req.prompt,
                settings,
                masks,
                lambda done, total: progress(done / total),
                source,
                restored.carry if restored is not None else None,
            )
            chunk_first = first + len(buffer)
            for chunk in chunks:
                yield from drained(chunk, chunk_first, pipeline.carry)
                chunk_first += chunk.shape[1]
                if cursor.out >= len(cursor.wanted):
                    break
        self._cursor = None
        if cursor.out < len(cursor.wanted):
            raise RuntimeError(f"generated {first + len(buffer)} frames at 25 fps, needed {cursor.wanted[-1] + 1}")
        held["finished"] = True

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
