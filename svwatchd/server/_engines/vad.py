"""The voice activity detector both engines cut speech with: Silero, bundled with faster-whisper.

Nothing is downloaded: the ONNX model ships inside the faster-whisper wheel.
Its default settings (threshold 0.5, 2 s of silence to end a stretch, 0.4 s
of padding either side) are faster-whisper's own for ``vad_filter``, so the
Whisper engine's packed and solo decodes see the same speech. The module
imports faster-whisper only when called, so importing the engines package
stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from svwatchd.errors import EngineError
from svwatchd.server._engines.base import Audio

__all__ = ["VAD_NAME", "load_vad", "speech_chunks"]

VAD_NAME = "silero_vad_v6 (bundled with faster-whisper)"
"""The VAD as ``info()["vad"]`` reports it."""


def load_vad() -> Any:
    """Load the bundled VAD now (not on the first request); return its options (VadOptions).

    Raises EngineError when the model file is missing from the installed wheel.
    """
    from faster_whisper.utils import get_assets_path
    from faster_whisper.vad import VadOptions, get_vad_model

    vad_file = Path(get_assets_path(), "silero_vad_v6.onnx")
    if not vad_file.is_file():
        raise EngineError(f"faster-whisper's bundled VAD model {vad_file} is missing")
    _without_memory_pattern(get_vad_model(), vad_file)
    return VadOptions()


def _without_memory_pattern(model: Any, vad_file: Path) -> None:
    """Give the VAD (faster-whisper's one shared instance, which its ``vad_filter`` uses
    too) an ONNX Runtime session without the memory pattern, faster-whisper's settings
    otherwise. ONNX Runtime plans and keeps memory for each input shape it sees, and the
    VAD sees a new length with every clip and piece: measured, 300 lengths of 10-60 s took
    a process from 95 to 222 MB and still growing; without the pattern to 160 MB, for the
    same CPU time (a known ONNX Runtime behaviour with changing shapes)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.log_severity_level = 4
    model.session = onnxruntime.InferenceSession(
        str(vad_file), providers=["CPUExecutionProvider"], sess_options=options
    )


def speech_chunks(clip: Audio, options: Any) -> list[tuple[int, int]]:
    """The sample ranges of ``clip`` the VAD marks as speech (padded, in order)."""
    from faster_whisper.vad import get_speech_timestamps

    if len(clip) == 0:
        return []
    return [(int(c["start"]), int(c["end"])) for c in get_speech_timestamps(clip, options)]
