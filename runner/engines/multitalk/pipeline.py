"""MultiTalk generation: clip mode (one window) and streaming mode (overlapping windows).

Each window of `frame_num` (4n+1) frames is conditioned on known frames (the reference
image first, then the last `motion_frames` generated frames), their CLIP tokens, the text,
and the audio windows of its frames; it is denoised with `sampler.denoise`, decoded, colour
matched to the reference, and yielded without its known frames. Audio shorter than the
last window is extended with its time-reversed tail, as the reference does.

InfiniteTalk (dubbing, `generate(..., source=...)`): each window is conditioned on the
source video's frame at the window's start instead (CLIP tokens and the VAE condition of
that one frame, mask on frame 0 only), and the generated motion frames enter as clean
latents held fixed in the noisy latent (the first window holds the source frame's latent).

Streaming resumes (docs/runner.md, Resuming): before yielding a window the pipeline sets
`carry`, all the next window takes from this one; `generate(..., resume=carry)` starts there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from .audio_adapter import AUDIO_WINDOW, VAE_TIME_STRIDE
from .color import match_colors
from .denoiser import Denoiser, LocalDenoiser
from .sampler import Guidance, denoise, shifted_timesteps
from .transformer import Conditioning, MultiTalkTransformer

VAE_SPATIAL_STRIDE = 8
LATENT_CHANNELS = 16


@dataclass
class Encoders:
    """The frozen encoders around the denoiser (real ones in loader.py; any callables in tests)."""

    encode_text: Callable[[str], torch.Tensor]  # prompt -> [L, text_dim] (L <= 512)
    encode_image: Callable[[torch.Tensor], torch.Tensor]  # [1, 3, 1, H, W] in [-1, 1] -> [1, 257, 1280]
    encode_video: Callable[[torch.Tensor], torch.Tensor]  # [1, 3, T, H, W] in [-1, 1] -> [1, 16, t, h, w]
    decode_latents: Callable[[torch.Tensor], torch.Tensor]  # [1, 16, t, h, w] -> [1, 3, T, H, W] in [-1, 1]


@dataclass
class Settings:
    frame_num: int = 81  # window length, 4n+1
    motion_frames: int = 25  # frames carried into the next window (streaming)
    streaming: bool = False  # False: one window (clip mode)
    max_frames: int = 1000  # streaming stops once the audio (or this) is covered
    steps: int = 40
    shift: float = 7.0
    tea_cache: float = 0.0  # TeaCache threshold, 0 = off
    seed: int = 42
    guidance: Guidance = field(default_factory=Guidance)
    color_strength: float = 1.0
    negative_prompt: str = ""
    text_len: int = 512


@dataclass(frozen=True)
class WindowCarry:
    """What the window after a finished one takes from it: a streaming render resumes from this.

    The rest is recomputed from the inputs: the colour reference (the portrait, or the source's
    first frame), the text, the audio windows (extended when `start` makes the window the last)
    and a dub's conditioning frame. TeaCache and APG restart with every window.
    """

    window: int  # the next window's index
    start: int  # its first frame at the video rate (25 fps)
    motion: torch.Tensor  # [3, motion_frames, H, W] float32: the last frames generated, colour matched
    rng: torch.Tensor  # the generator's state after the finished window (torch.Generator.get_state())


def window_indices(start: int, length: int, total: int, radius: int = AUDIO_WINDOW // 2) -> torch.Tensor:
    """[length, 2*radius+1] audio-frame indices t-radius..t+radius around each video frame, clamped."""
    centres = torch.arange(start, start + length)[:, None]
    return (centres + torch.arange(-radius, radius + 1)[None, :]).clamp(0, total - 1)


def condition_mask(frame_num: int, known: int, lat_h: int, lat_w: int) -> torch.Tensor:
    """[1, 4, T_lat, h, w]: 1 where a video frame is given; frame 0 repeated 4x to fill the first latent slot."""
    mask = torch.ones(1, frame_num, lat_h, lat_w)
    mask[:, known:] = 0
    mask = torch.cat([mask[:, :1].repeat_interleave(VAE_TIME_STRIDE, dim=1), mask[:, 1:]], dim=1)
    return mask.view(1, mask.shape[1] // VAE_TIME_STRIDE, VAE_TIME_STRIDE, lat_h, lat_w).transpose(1, 2)


def pad_text(text: torch.Tensor, length: int) -> torch.Tensor:
    if text.shape[0] > length:
        text = text[:length]
    return torch.cat([text, text.new_zeros(length - text.shape[0], text.shape[1])])[None]


def branch_conditions(
    text: torch.Tensor,
    text_null: torch.Tensor,
    clip_tokens: torch.Tensor,
    condition: torch.Tensor,
    windows: torch.Tensor,
    masks: torch.Tensor | None,
) -> dict[str, Conditioning]:
    """The four guidance branches of one window (each step evaluates two or three of them)."""
    zero_audio = torch.zeros_like(windows)[-1:]
    return {
        "cond": Conditioning(text, clip_tokens, condition, windows, masks, "cond"),
        "drop_text": Conditioning(text_null, clip_tokens, condition, windows, masks, "drop_text"),
        "drop_audio": Conditioning(text, clip_tokens, condition, zero_audio, masks, "drop_audio"),
        "uncond": Conditioning(text_null, clip_tokens, condition, zero_audio, masks, "uncond"),
    }


class MultiTalkPipeline:
    def __init__(
        self,
        transformer: MultiTalkTransformer | Denoiser,
        encoders: Encoders,
        device: torch.device,
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        # A bare transformer runs every branch here; a Denoiser may spread them over ranks.
        self.denoiser: Denoiser = (
            LocalDenoiser(transformer) if isinstance(transformer, MultiTalkTransformer) else transformer
        )
        self.layout = ""  # how the last render's evaluations were spread (Denoiser.start_render)
        self.carry: WindowCarry | None = None  # set before each window is yielded (None after the last)
        self.encoders = encoders
        self.device = device
        # Told which model runs next ("text_encoder", "image_encoder", "vae", "transformer"): offload hook.
        self.on_stage = on_stage or (lambda stage: None)

    @torch.no_grad()
    def generate(
        self,
        image: torch.Tensor,
        audio: list[torch.Tensor],
        prompt: str,
        settings: Settings,
        masks: torch.Tensor | None = None,
        progress: Callable[[int, int], None] | None = None,
        source: Callable[[int], torch.Tensor] | None = None,
        resume: WindowCarry | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield new frames [3, n, H, W] in [-1, 1] window by window (from `resume`'s window on).

        image [3, H, W] in [-1, 1] (H, W multiples of 16); audio: per person [T, layers, 768]
        wav2vec features at the video rate; masks [3, H/8, W/8] for two persons. With
        `source` (InfiniteTalk, dubbing): frame index at the video rate -> that frame of the
        source video [3, H, W] in [-1, 1] (its last frame past its end); `image` is unused.
        """
        if source is not None:
            yield from self._dub(source, audio, prompt, settings, masks, progress, resume)
            return
        if settings.frame_num % VAE_TIME_STRIDE != 1:
            raise ValueError(f"frame_num must be 4n+1, got {settings.frame_num}")
        if settings.streaming and settings.motion_frames % VAE_TIME_STRIDE != 1:
            raise ValueError(f"motion_frames must be 4n+1, got {settings.motion_frames}")
        device, dtype = self.device, self.denoiser.dtype
        frame_num = settings.frame_num
        _, height, width = image.shape
        lat_h, lat_w = height // VAE_SPATIAL_STRIDE, width // VAE_SPATIAL_STRIDE
        lat_t = (frame_num - 1) // VAE_TIME_STRIDE + 1
        reference = image.to(device, torch.float32)
        cond_frames = reference[:, None][None]  # 1, 3, 1, H, W
        audio = [a.float() for a in audio]
        self.on_stage("text_encoder")
        text = pad_text(self.encoders.encode_text(prompt), settings.text_len).to(device)
        text_null = pad_text(self.encoders.encode_text(settings.negative_prompt), settings.text_len).to(device)
        timesteps = shifted_timesteps(settings.steps, settings.shift)
        self.layout = self.denoiser.start_render(len(settings.guidance.branches()), settings.tea_cache, settings.steps)
        generator = torch.Generator(device=device).manual_seed(settings.seed)
        known, start, last = 1, 0, False
        windows_total = self._windows_total(audio[0].shape[0], settings)
        window = 0
        if resume is not None:
            generator.set_state(resume.rng)
            known, start, window = settings.motion_frames, resume.start, resume.window
            cond_frames = resume.motion[None].to(device, torch.float32)
            last, audio = self._last_window(audio, start, settings)
        while True:
            idx = window_indices(start, frame_num, audio[0].shape[0])
            windows = torch.stack([a[idx] for a in audio]).to(device, dtype)  # P, F, 5, L, C
            noise = torch.randn(
                LATENT_CHANNELS, lat_t, lat_h, lat_w, generator=generator, device=device, dtype=torch.float32
            )
            self.on_stage("image_encoder")
            clip_tokens = self.encoders.encode_image(cond_frames[:, :, -1:]).to(dtype)
            padded = torch.cat([cond_frames, cond_frames.new_zeros(1, 3, frame_num - known, height, width)], dim=2)
            self.on_stage("vae")
            latents_y = self.encoders.encode_video(padded).to(dtype)
            motion = latents_y[0, :, : 1 + (known - 1) // VAE_TIME_STRIDE].float() if window > 0 else None
            condition = torch.cat([condition_mask(frame_num, known, lat_h, lat_w).to(device, dtype), latents_y], 1)
            self.denoiser.set_window(branch_conditions(text, text_null, clip_tokens, condition, windows, masks))
            predict = self.denoiser.__call__

            def step_progress(done: int, total: int, window: int = window) -> None:
                if progress is not None:
                    progress(window * total + done, windows_total * total)

            self.on_stage("transformer")
            latent = denoise(predict, noise, timesteps, settings.guidance, generator, motion, step_progress)
            self.on_stage("vae")
            video = self.encoders.decode_latents(latent[None].to(dtype)).float()[0]
            video = match_colors(video, reference, settings.color_strength)
            carry = self._carry(video, generator, window, start, last, settings)
            yield video if window == 0 else video[:, known:]
            if carry is None:
                return
            known, start, window = settings.motion_frames, carry.start, carry.window
            cond_frames = carry.motion[None].to(device, torch.float32)
            last, audio = self._last_window(audio, start, settings)

    def _dub(
        self,
        source: Callable[[int], torch.Tensor],
        audio: list[torch.Tensor],
        prompt: str,
        settings: Settings,
        masks: torch.Tensor | None,
        progress: Callable[[int, int], None] | None,
        resume: WindowCarry | None,
    ) -> Iterator[torch.Tensor]:
        """InfiniteTalk's windows: source frame at each window's start + clean motion latents."""
        if settings.frame_num % VAE_TIME_STRIDE != 1:
            raise ValueError(f"frame_num must be 4n+1, got {settings.frame_num}")
        if settings.streaming and (
            settings.motion_frames % VAE_TIME_STRIDE != 1 or settings.motion_frames >= settings.frame_num
        ):
            raise ValueError(f"motion_frames must be 4n+1 and below frame_num, got {settings.motion_frames}")
        device, dtype = self.device, self.denoiser.dtype
        frame_num, motion_frames = settings.frame_num, settings.motion_frames
        reference = source(0).to(device, torch.float32)  # colour reference: the source's first frame
        _, height, width = reference.shape
        lat_h, lat_w = height // VAE_SPATIAL_STRIDE, width // VAE_SPATIAL_STRIDE
        lat_t = (frame_num - 1) // VAE_TIME_STRIDE + 1
        audio = [a.float() for a in audio]
        self.on_stage("text_encoder")
        text = pad_text(self.encoders.encode_text(prompt), settings.text_len).to(device)
        text_null = pad_text(self.encoders.encode_text(settings.negative_prompt), settings.text_len).to(device)
        timesteps = shifted_timesteps(settings.steps, settings.shift)
        self.layout = self.denoiser.start_render(len(settings.guidance.branches()), settings.tea_cache, settings.steps)
        generator = torch.Generator(device=device).manual_seed(settings.seed)
        mask = condition_mask(frame_num, 1, lat_h, lat_w).to(device, dtype)
        windows_total = self._windows_total(audio[0].shape[0], settings)
        start, window, last = 0, 0, False
        cond = reference
        motion_pixels: torch.Tensor | None = None  # [1, 3, motion_frames, H, W] generated, colour matched
        if resume is not None:
            generator.set_state(resume.rng)
            start, window = resume.start, resume.window
            motion_pixels = resume.motion[None].to(device, torch.float32)
            cond = source(start).to(device, torch.float32)
            last, audio = self._last_window(audio, start, settings)
        while True:
            idx = window_indices(start, frame_num, audio[0].shape[0])
            windows = torch.stack([a[idx] for a in audio]).to(device, dtype)  # P, F, 5, L, C
            noise = torch.randn(
                LATENT_CHANNELS, lat_t, lat_h, lat_w, generator=generator, device=device, dtype=torch.float32
            )
            frame = cond[None, :, None]  # 1, 3, 1, H, W
            self.on_stage("image_encoder")
            clip_tokens = self.encoders.encode_image(frame).to(dtype)
            self.on_stage("vae")
            padded = torch.cat([frame, frame.new_zeros(1, 3, frame_num - 1, height, width)], dim=2)
            condition = torch.cat([mask, self.encoders.encode_video(padded).to(dtype)], 1)
            held = self.encoders.encode_video(frame if motion_pixels is None else motion_pixels)[0].float()
            self.denoiser.set_window(branch_conditions(text, text_null, clip_tokens, condition, windows, masks))

            def step_progress(done: int, total: int, window: int = window) -> None:
                if progress is not None:
                    progress(window * total + done, windows_total * total)

            self.on_stage("transformer")
            latent = denoise(
                self.denoiser.__call__,
                noise,
                timesteps,
                settings.guidance,
                generator,
                held,
                step_progress,
                clean_motion=True,
                draw_motion_noise=window > 0,
            )
            self.on_stage("vae")
            video = self.encoders.decode_latents(latent[None].to(dtype)).float()[0]
            video = match_colors(video, reference, settings.color_strength)
            carry = self._carry(video, generator, window, start, last, settings)
            yield video if window == 0 else video[:, motion_frames:]
            if carry is None:
                return
            start, window = carry.start, carry.window
            motion_pixels = carry.motion[None].to(device, torch.float32)
            cond = source(start).to(device, torch.float32)
            last, audio = self._last_window(audio, start, settings)

    def _carry(
        self, video: torch.Tensor, generator: torch.Generator, window: int, start: int, last: bool, settings: Settings
    ) -> WindowCarry | None:
        """Set `carry` for the window after this one (None: this one is the last)."""
        carry = None
        if not (last or not settings.streaming or settings.max_frames <= settings.frame_num):
            motion = video[:, -settings.motion_frames :].to(torch.float32)
            step = settings.frame_num - settings.motion_frames
            carry = WindowCarry(window + 1, start + step, motion, generator.get_state())
        self.carry = carry
        return carry

    @classmethod
    def _last_window(cls, audio: list[torch.Tensor], start: int, settings: Settings) -> tuple[bool, list[torch.Tensor]]:
        """Is the window from `start` the last? Then its audio is extended to cover it."""
        end = start + settings.frame_num
        if end >= min(settings.max_frames, audio[0].shape[0]):
            return True, [cls._extend(a, end) for a in audio]
        return False, audio

    @staticmethod
    def _extend(features: torch.Tensor, end: int) -> torch.Tensor:
        """Extend audio features past `end` with their time-reversed tail (keeps speech-like motion)."""
        if end < features.shape[0]:
            return features
        missing = end - features.shape[0] + 3
        return torch.cat([features, torch.flip(features[-missing:], dims=[0])])

    @staticmethod
    def _windows_total(audio_frames: int, settings: Settings) -> int:
        if not settings.streaming:
            return 1
        # The loop's windows: one more for each `step` until a window reaches the end (no cap).
        end, step = min(settings.max_frames, audio_frames), settings.frame_num - settings.motion_frames
        return 1 + max(0, -(-(end - settings.frame_num) // step))
