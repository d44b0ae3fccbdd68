"""Analytic evaluator: recognise the synthetic world's objects from pixels, score prompt
fidelity, measure picture quality and long-stream drift. No neural network."""

from __future__ import annotations

from .defects import flicker, freeze, gaussian_blur, h264_roundtrip, hue_rotate, mild_degradation
from .drift import DriftConfig, drift_report
from .fidelity import ATTRIBUTES, FidelityResult, FidelityTally, score_detections, score_prompt_fidelity
from .quality import QualityThresholds, quality_measures
from .recognise import DetectedObject, RecogniseConfig, classify_background, recognise_clip, recognise_tracks
from .report import evaluate_videos, format_accuracy_table, format_drift_table

__all__ = [
    "ATTRIBUTES",
    "DetectedObject",
    "DriftConfig",
    "FidelityResult",
    "FidelityTally",
    "QualityThresholds",
    "RecogniseConfig",
    "classify_background",
    "drift_report",
    "evaluate_videos",
    "flicker",
    "format_accuracy_table",
    "format_drift_table",
    "freeze",
    "gaussian_blur",
    "h264_roundtrip",
    "hue_rotate",
    "mild_degradation",
    "quality_measures",
    "recognise_clip",
    "recognise_tracks",
    "score_detections",
    "score_prompt_fidelity",
]
