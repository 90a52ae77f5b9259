"""Experiment configuration: the YAML schema and its loader."""

from peftlab.config.load import LoadedExperiment, load_experiment, parse_experiment
from peftlab.config.schema import (
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    MethodEntry,
    ModelConfig,
    TrainingConfig,
)

__all__ = [
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "LoadedExperiment",
    "MethodEntry",
    "ModelConfig",
    "TrainingConfig",
    "load_experiment",
    "parse_experiment",
]
