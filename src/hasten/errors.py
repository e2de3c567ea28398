"""Errors a user can act on. The CLI prints the message on one line and exits with code 2."""


class HastenError(Exception):
    """Base of every error hasten raises on purpose; the message names the file or input and what to do."""


class ModelLoadError(HastenError):
    """A model file is missing, not ONNX, truncated, lacks external data, or is otherwise unusable."""


class ModelSaveError(HastenError):
    """A model cannot be written where asked (for example it would overwrite its own input)."""


class DataError(HastenError):
    """Samples are missing, malformed, or do not match the model's inputs."""


class BackendError(HastenError):
    """A runtime is missing, or cannot compile or run the model."""


class MetricError(HastenError):
    """A metric is unknown, or cannot score the given outputs."""


class QuantizationError(HastenError):
    """A quantisation request cannot be met (no quantisable nodes, too few samples, NaN outputs...)."""


class RecipeError(HastenError):
    """A recipe file or object is malformed, or names a pass / scheme hasten does not know."""


class ResultError(HastenError):
    """An output folder of `hasten optimize` is missing, incomplete, partial, or mixes two runs."""


class SearchError(HastenError):
    """The optimisation search cannot start or continue (bad budget, foreign output folder...)."""


class ExportError(HastenError):
    """A model that cannot be exported to C, or a toolchain that cannot build or run the export."""
