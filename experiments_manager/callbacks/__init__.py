"""Keras callbacks the engine adds to every training run."""

from experiments_manager.callbacks.best_value import BestValue, TrackBestValue
from experiments_manager.callbacks.deterministic_epochs import DeterministicEpochs
from experiments_manager.callbacks.ema_swap import EMASwap
from experiments_manager.callbacks.epoch_scalars import EpochScalars
from experiments_manager.callbacks.export_on_improvement import ExportOnImprovement
from experiments_manager.callbacks.hparams_logger import HParamsLogger
from experiments_manager.callbacks.history_csv import HistoryCSV
from experiments_manager.callbacks.learning_rate_logger import LearningRateLogger
from experiments_manager.callbacks.model_graph import ModelGraph
from experiments_manager.callbacks.monitor_direction import ResolveMonitorMode, monitor_mode_resolver
from experiments_manager.callbacks.projector import ProjectorLogger
from experiments_manager.callbacks.raw_weights_validation import RawWeightsValidation
from experiments_manager.callbacks.resumable import ResumableEarlyStopping, ResumableReduceLROnPlateau
from experiments_manager.callbacks.run_info_updater import RunInfoUpdater
from experiments_manager.callbacks.step_profiler import StepProfiler
from experiments_manager.callbacks.stop_on_signal import StopOnSignal, TrainingInterrupted
from experiments_manager.callbacks.summary_writers import SummaryWriters
from experiments_manager.callbacks.training_checkpoint import TrainingCheckpoint
from experiments_manager.callbacks.training_curves import TrainingCurves
from experiments_manager.callbacks.weight_histograms import WeightHistograms
from experiments_manager.callbacks.writer_fence import WriterFence

__all__ = ["BestValue", "DeterministicEpochs", "EMASwap", "EpochScalars", "ExportOnImprovement", "HParamsLogger",
           "HistoryCSV", "LearningRateLogger", "ModelGraph", "ProjectorLogger", "RawWeightsValidation",
           "ResolveMonitorMode", "ResumableEarlyStopping", "ResumableReduceLROnPlateau", "RunInfoUpdater",
           "StepProfiler", "StopOnSignal", "SummaryWriters", "TrackBestValue", "TrainingCheckpoint", "TrainingCurves",
           "TrainingInterrupted", "WeightHistograms", "WriterFence", "monitor_mode_resolver"]
