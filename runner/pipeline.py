"""One render, stage by stage: pick engine -> download -> decode -> load -> features ->
generate+encode -> publish. Each stage is timed; the result is a RunResult.

Everything that can be refused without work is refused first (engine availability,
request checks, an existing output), so a doomed render costs no download.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from multitalk.runner.audio import DecodedSpeech, Timeline, build_timeline, decode_speech
from multitalk.runner.encode import Mp4Writer
from multitalk.runner.engines.base import ENGINE_SAMPLE_RATE, Engine, Image, RenderInputs
from multitalk.runner.engines.registry import ENGINES, create_engine
from multitalk.runner.errors import EngineUnavailable, InvalidInput
from multitalk.runner.faults import FaultPoint, crash_point, slow_window
from multitalk.runner.image import check_bbox, fitted_box, load_portrait, upright_size
from multitalk.runner.outputs import Publisher, poster_frame, sha256_file
from multitalk.runner.progress import Windows
from multitalk.runner.request import RenderRequest, canonical_hash
from multitalk.runner.result import AudioReport, EngineReport, OutputReport, ResumeReport, RunResult, Timings
from multitalk.runner.resume import Checkpoints, RenderIdentity, open_scratch, warn
from multitalk.runner.storage import read_input
from multitalk.runner.video_source import SourceVideo

MAX_AUDIO_BYTES = 200 * 1024 * 1024  # 10 min of 48 kHz stereo 16-bit PCM fits
MAX_IMAGE_BYTES = 40 * 1024 * 1024
MAX_VIDEO_BYTES = 2 * 1024 * 1024 * 1024  # 10 min of 1080p at 25 Mb/s fits

ProgressFn = Callable[[str, float], None]
WindowsFn = Callable[[Windows], None]

# libx264 preset per engine: a test card needs no compression effort; real renders get more.
X264_PRESETS = {"placeholder": "ultrafast"}
DEFAULT_X264_PRESET = "veryfast"


def runner_version() -> str:
    try:
        return metadata.version("multitalk-operator")
    except metadata.PackageNotFoundError:
        return "unknown"


def select_engine(request: RenderRequest, model_dir: Path) -> tuple[Engine, str | None]:
    """The engine to run, and why it is not the one asked for (None when it is).

    auto: the first engine in registry order (best first) that is available and accepts the
    request (e.g. lite needs an image). Explicit: that engine; if it is unavailable, exit 4
    unless allowFallback, then the best other engine as for auto. Never silent: the reason
    lists every better engine skipped and why. A misconfigured engine (a bad setting, e.g.
    MULTITALK_COLOR_MATCH=x) is never skipped: exit 4, naming the variable.
    """
    requested = request.engine
    skipped: list[str] = []
    if requested != "auto":
        engine, avail = create_engine(requested, model_dir)
        if avail.misconfigured:
            raise EngineUnavailable(f"{requested} is misconfigured: {avail.reason}", "engine")
        if engine is not None and avail.available:
            engine.validate(request)  # the engine asked for: its objections are the user's to fix (exit 3)
            return engine, None
        why = f"{requested} unavailable: {avail.reason}"
        if not request.allow_fallback:
            raise EngineUnavailable(f"{why}; set allowFallback: true to accept a weaker engine", "engine")
        skipped.append(why)
    for name in ENGINES:
        if name == requested:
            continue
        engine, avail = create_engine(name, model_dir)
        if avail.misconfigured:  # a typo must not quietly change the engine
            raise EngineUnavailable(f"{name} is misconfigured: {avail.reason}", "engine")
        if engine is None or not avail.available:
            skipped.append(f"{name} unavailable: {avail.reason}")
            continue
        try:
            engine.validate(request)
        except InvalidInput as exc:
            skipped.append(f"{name} cannot render this request: {exc}")
            continue
        return engine, "; ".join(s[:300] for s in skipped) or None
    raise EngineUnavailable("no engine is available here: " + "; ".join(skipped), "engine")


@dataclass
class Pipeline:
    request: RenderRequest
    model_dir: Path
    progress: ProgressFn = lambda stage, fraction: None
    x264_preset: str | None = None  # None: per engine (X264_PRESETS)
    background_encoding: bool = True  # encode on a writer thread while the engine draws (benchmarks compare)
    checkpoints: bool = True  # checkpoint each window of a resumable engine (benchmarks compare)
    windows: WindowsFn = lambda report: None  # a window was restored or checkpointed
    resume_report: ResumeReport | None = None
    started: float = field(default_factory=time.perf_counter)
    timings: Timings = field(default_factory=Timings)
    engine_report: EngineReport | None = None
    audio_report: AudioReport | None = None
    first_frame_at: float | None = None  # perf_counter of the first generated frame (benchmarks)
    source_video: SourceVideo | None = None  # sourceVideo, decoded on demand (a dub)

    def _stand_in(self, engine: Engine, refusal: InvalidInput) -> Engine:
        """An engine refused these inputs (lite: no usable face). With `auto` or allowFallback the
        placeholder stands in and the result says why; otherwise the refusal stands (exit 3)."""
        req = self.request
        if engine.name == "placeholder" or not (req.engine == "auto" or req.allow_fallback):
            raise refusal
        stand_in, avail = create_engine("placeholder", self.model_dir)
        if stand_in is None or not avail.available:
            raise refusal
        assert self.engine_report is not None
        reason = f"{engine.name} refused the input: {refusal}"[:500]
        earlier = self.engine_report.fallback_reason
        self.engine_report = self.engine_report.model_copy(
            update={"name": stand_in.name, "fallback_reason": f"{earlier}; {reason}" if earlier else reason}
        )
        return stand_in

    def _time(self, name: str, since: float) -> None:
        self.timings = self.timings.model_copy(update={name: round(time.perf_counter() - since, 3)})

    def run(self) -> RunResult:
        req = self.request
        self.engine_report = EngineReport(requested=req.engine, version=runner_version())
        engine, fallback = select_engine(req, self.model_dir)
        self.engine_report = self.engine_report.model_copy(update={"name": engine.name, "fallback_reason": fallback})
        try:
            return self._run(engine)
        finally:
            engine.close()
            if self.source_video is not None:
                self.source_video.close()

    def _run(self, engine: Engine) -> RunResult:
        req = self.request
        publisher = Publisher(req.output, req.storage)
        earlier = publisher.finished(canonical_hash(req))
        if earlier is not None:
            return self._already_published(earlier)
        publisher.preflight()

        t = time.perf_counter()
        self.progress("download", 0.0)
        audio_bytes = [
            read_input(s.audio, f"speakers[{i}].audio", MAX_AUDIO_BYTES, req.storage)
            for i, s in enumerate(req.speakers)
        ]
        image_bytes = read_input(req.image, "image", MAX_IMAGE_BYTES, req.storage) if req.image else None
        video_bytes = (
            read_input(req.source_video, "sourceVideo", MAX_VIDEO_BYTES, req.storage) if req.source_video else None
        )
        self.progress("download", 1.0)
        self._time("download_seconds", t)

        t = time.perf_counter()
        timeline = self._decode_audio(audio_bytes)
        del audio_bytes
        v = req.video
        if video_bytes is not None:
            self.source_video = SourceVideo(video_bytes, v.width, v.height, v.fps)
        source_video = self.source_video
        del video_bytes
        if (image_bytes is not None or source_video is not None) and any(s.bbox for s in req.speakers):
            # Boxes are checked against the picture's header before its pixels are decoded;
            # engines see the fitted frame, so the boxes (image pixels) are mapped onto it.
            if source_video is not None:
                source = source_video.info.upright_size
            else:
                assert image_bytes is not None
                source = upright_size(image_bytes, "image")
            for i, s in enumerate(req.speakers):
                if s.bbox is not None:
                    check_bbox(s.bbox, source, f"speakers[{i}].bbox")
            speakers = [
                s if s.bbox is None else s.model_copy(update={"bbox": fitted_box(s.bbox, source, (v.width, v.height))})
                for s in req.speakers
            ]
            req = req.model_copy(update={"speakers": speakers})
        image = load_portrait(image_bytes, "image", v.width, v.height) if image_bytes is not None else None
        del image_bytes
        if source_video is not None:
            image = source_video.frame(0)  # engines that animate one picture start from the first frame
        frames = round(timeline.duration_seconds * v.fps)
        if frames < 1:
            raise InvalidInput(f"the video would have no frames at {v.fps} fps", "video.durationSeconds")
        inputs = RenderInputs(
            request=req,
            image=image,
            speech=timeline.speech,
            mix=timeline.mix,
            width=v.width,
            height=v.height,
            fps=v.fps,
            frames=frames,
            duration_seconds=timeline.duration_seconds,
            model_dir=self.model_dir,
            source=source_video,
        )
        decode_seconds = time.perf_counter() - t
        self.audio_report = AudioReport(
            duration_seconds=round(timeline.duration_seconds, 3), sample_rate=timeline.mux_rate
        )

        t = time.perf_counter()
        self.progress("load", 0.0)
        engine.load(req)
        self.progress("load", 1.0)
        self._time("model_load_seconds", t)

        t = time.perf_counter()
        try:
            info = engine.prepare(inputs, lambda f: self.progress("features", f))
        except InvalidInput as exc:
            # e.g. lite finds no face: a test card stands in, said so. The refusing engine is
            # still closed by run(); the placeholder holds nothing to close.
            engine = self._stand_in(engine, exc)
            engine.load(req)
            info = engine.prepare(inputs, lambda f: self.progress("features", f))
        self.timings = self.timings.model_copy(
            update={"feature_seconds": round(time.perf_counter() - t + decode_seconds, 3)}
        )
        assert self.engine_report is not None
        self.engine_report = self.engine_report.model_copy(
            update={"device": info.device, "precision": info.precision, "models": list(info.models)}
        )
        if info.feature_shape:
            self.audio_report = self.audio_report.model_copy(update={"feature_shape": list(info.feature_shape)})

        checkpoints = self._checkpoints(engine, inputs)
        scratch = publisher.scratch_video()
        try:
            poster_png = self._generate(engine, inputs, timeline, scratch, checkpoints)
            t = time.perf_counter()
            self.progress("upload", 0.0)
            output = self._output_report(publisher, scratch, inputs)
            manifest = self._manifest(output)
            publisher.publish(scratch, poster_png, manifest)
            self._time("upload_seconds", t)
        finally:
            with contextlib.suppress(FileNotFoundError):
                scratch.unlink()
        if checkpoints is not None:
            checkpoints.remove()  # published: nothing left to resume
        self._time("total_seconds", self.started)
        self.progress("done", 1.0)
        return RunResult(
            ok=True,
            exit_code=0,
            engine=self.engine_report,
            timings=self.timings,
            audio=self.audio_report,
            output=output,
            resume=self.resume_report,
        )

    def _checkpoints(self, engine: Engine, inputs: RenderInputs) -> Checkpoints | None:
        """This render's checkpoints, keyed by the request (as received, before boxes are fitted)."""
        if not (self.checkpoints and engine.resumable):
            return None
        render = RenderIdentity(
            request_sha256=canonical_hash(self.request),
            engine=engine.name,
            runner_version=runner_version(),
            width=inputs.width,
            height=inputs.height,
            fps=inputs.fps,
            frames=inputs.frames,
            window_frames=engine.window_frames,
        )
        scratch = open_scratch(self.request.output.uri, self.request.storage, render.request_sha256)
        return Checkpoints(scratch, render)

    def _windows_done(self, checkpoints: Checkpoints, done: int, resumed_from: int) -> None:
        self.resume_report = ResumeReport(
            windows_done=done,
            windows_total=checkpoints.windows_total,
            window_frames=checkpoints.render.window_frames,
            resumed_from_frame=resumed_from,
        )
        self.windows(Windows(done, checkpoints.windows_total, resumed_from))

    def _decode_audio(self, audio_bytes: list[bytes]) -> Timeline:
        v = self.request.video
        decoded: list[DecodedSpeech] = []
        for i, data in enumerate(audio_bytes):
            rate = decoded[0].mux_rate if decoded else None  # one sound track, one rate
            decoded.append(decode_speech(data, f"speakers[{i}].audio", v.max_duration_seconds, rate))
        return build_timeline(decoded, self.request.audio_mode, v.duration_seconds, v.max_duration_seconds)

    def _generate(
        self, engine: Engine, inputs: RenderInputs, tl: Timeline, path: Path, checkpoints: Checkpoints | None
    ) -> bytes:
        """Restore the checkpointed windows into the encoder, generate the rest (checkpointing each
        window), and return the poster PNG."""
        poster_index = poster_frame(inputs.frames)
        poster_png: bytes | None = None
        self.progress("generate", 0.0)
        engine_seconds = 0.0  # time inside the engine's frame generator
        with Mp4Writer(
            path,
            inputs.width,
            inputs.height,
            inputs.fps,
            tl.mux,
            tl.mux_rate,
            preset=self.x264_preset or X264_PRESETS.get(engine.name, DEFAULT_X264_PRESET),
            background=self.background_encoding,
        ) as writer:
            start, state, window = 0, b"", 0
            checkpoint_seconds = 0.0
            if checkpoints is not None:
                t = time.perf_counter()
                for restored in checkpoints.restore():
                    problem = engine.check_state(restored.state, restored.end)
                    if problem is not None:
                        warn(f"checkpoint window {window} is not used: its engine state is refused: {problem}")
                        break
                    for planes in restored.planes():
                        writer.write_planes(planes)
                    poster_png = restored.poster_png or poster_png
                    start, state, window = restored.end, restored.state, window + 1
                checkpoints.start_at(window, start)
                checkpoint_seconds += time.perf_counter() - t
                self._windows_done(checkpoints, window, start)
                self.progress("generate", start / inputs.frames)
            count = start
            frames = engine.frames(inputs, lambda f: self.progress("generate", f), start=start, state=state)
            while True:
                t = time.perf_counter()
                frame = next(frames, None)
                engine_seconds += time.perf_counter() - t
                if frame is None:
                    break
                if count == start:
                    self.first_frame_at = time.perf_counter()
                if count >= inputs.frames:
                    raise RuntimeError(f"engine {engine.name} yielded more than {inputs.frames} frames")
                if count == poster_index:
                    poster_png = _png(frame)
                planes = writer.planes(frame)
                writer.write_planes(planes)
                if checkpoints is not None:
                    t = time.perf_counter()
                    done = checkpoints.add(
                        planes,
                        poster_png if count == poster_index else None,
                        engine.window_state,
                        lambda n: crash_point(FaultPoint.CHECKPOINT_DATA, n),
                    )
                    checkpoint_seconds += time.perf_counter() - t
                    if done is not None:
                        self._windows_done(checkpoints, done, start)
                        slow_window()
                count += 1
            if count != inputs.frames:
                raise RuntimeError(
                    f"engine {engine.name} yielded {count - start} frames, expected {inputs.frames - start}"
                )
            crash_point(FaultPoint.ASSEMBLY)
        # Encoding runs on the writer's thread alongside generation: the two may overlap.
        self.timings = self.timings.model_copy(
            update={
                "generate_seconds": round(engine_seconds, 3),
                "encode_seconds": round(writer.encode_seconds, 3),
                "checkpoint_seconds": round(checkpoint_seconds, 3) if checkpoints is not None else None,
            }
        )
        assert poster_png is not None  # frames >= 1, and a restored window holding the poster carries it
        return poster_png

    def _output_report(self, publisher: Publisher, video: Path, inputs: RenderInputs) -> OutputReport:
        return OutputReport(
            uri=publisher.targets.video,
            size_bytes=video.stat().st_size,
            sha256=sha256_file(video),
            duration_seconds=round(inputs.duration_seconds, 3),
            width=inputs.width,
            height=inputs.height,
            fps=inputs.fps,
            frames=inputs.frames,
            poster_uri=publisher.targets.poster,
            manifest_uri=publisher.targets.manifest,
        )

    def _already_published(self, manifest: dict[str, Any]) -> RunResult:
        """This request's video is already at its output (an earlier attempt published it): report it."""
        warn(f"{self.request.output.uri} already holds this request's render (an earlier attempt): nothing rendered")
        self.progress("done", 1.0)
        engine = manifest.get("engine")
        return RunResult(
            ok=True,
            exit_code=0,
            engine=EngineReport.model_validate(engine) if engine else self.engine_report,
            timings=Timings.model_validate(manifest.get("timings") or {}),
            audio=AudioReport.model_validate(manifest["audio"]) if manifest.get("audio") else None,
            output=OutputReport.model_validate(manifest["output"]),
        )

    def _manifest(self, output: OutputReport) -> bytes:
        doc = {
            "kind": "TalkingVideoManifest",
            "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "output": output.wire(),
            "engine": self.engine_report.wire() if self.engine_report else None,
            "audio": self.audio_report.wire() if self.audio_report else None,
            "timings": self.timings.wire(),
            "audioSampleRateForEngines": ENGINE_SAMPLE_RATE,
            "request": self.request.wire(),
        }
        return (json.dumps(doc, indent=2) + "\n").encode()


def _png(rgb: Image) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
