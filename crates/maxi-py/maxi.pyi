"""maxi: explain black-box classifiers by optimisation, with MAXi's API.

Components are named by string (canonical names such as ``"cem"``, ``"ao_exp_grad"``,
``"urv"`` or MAXi's class names such as ``"TF_CEMLoss"``, ``"AoExpGradOptimizer"``,
``"URVGradientEstimator"``, also available as ``maxi.TF_CEMLoss`` etc.). The model is any
callable taking a batch ``[B, ...]`` and returning scores ``[B, classes]``, a path to an
``.onnx`` file (run in Rust, without the GIL) or a :class:`Model`.
"""

from os import PathLike
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = npt.ArrayLike
InferenceCall = Union[Callable[[np.ndarray], Any], str, "PathLike[str]", "Model"]
_M = TypeVar("_M")

# MAXi's class names, as strings naming maxi's components.
CEMLoss: str
TF_CEMLoss: str
Torch_CEMLoss: str
URVGradientEstimator: str
URV: str
USRVGradientEstimator: str
USRV: str
AoExpGradOptimizer: str
AOExpGrad: str
AdaExpGradOptimizer: str
AdaExpGrad: str
AdaExpGradPOptimizer: str
AdaExpGradP: str
SpectralAoExpGradOptimizer: str
SpectralAOExpGrad: str

class Model:
    """A model run by maxi itself, without the GIL: an ONNX file through tract (``"onnx"``,
    pure Rust) or ONNX Runtime (``"onnxruntime"``), or a backend a plugin registered."""

    def __init__(
        self, path: Union[str, "PathLike[str]"], backend: Optional[str] = None, **kwargs: Any
    ) -> None:
        """Loads ``path`` with ``backend`` (default: the one registered for the file's
        extension) and the backend's kwargs (``threads``, ``batch_size``, ``output``,
        ``squeeze``; see ``list_components("model")``). Raises ValueError for a missing file,
        an unknown backend or a bad kwarg."""
    def __call__(self, batch: ArrayLike) -> npt.NDArray[np.float64]:
        """The model's output for a batch ``[B, ...item]`` (float64)."""
    @property
    def input_shape(self) -> Optional[List[int]]:
        """The item shape the model takes (no batch axis), when known."""

class Explanation:
    """The full record of a run."""

    savepoints: Dict[int, np.ndarray]
    """Update number -> explanation at that update (image's shape; float32 for a float32
    image, else float64). Taken after update 1, every ``save_freq``-th and the last."""
    candidate: np.ndarray
    """The explanation the run settles on: the best valid iterate, else the lowest loss."""
    valid: Optional[bool]
    """Whether ``candidate`` is a valid explanation (None: the loss cannot tell)."""
    iteration: int
    """The update that produced ``candidate``."""
    history: List[Dict[str, Any]]
    """One dict per update: iteration, round, attack_loss, valid, l1_norm, l2_norm_sq,
    objective, model_rows, model_calls."""
    model_rows: int
    """Rows sent to the explained model."""
    model_calls: int
    """Calls made to the explained model."""
    model_seconds: float
    """Seconds inside the explained model (for a callable: including numpy conversions)."""
    wall_seconds: float
    """Seconds of the whole run."""
    seed: int
    """The run's seed."""
    def to_dict(self) -> Dict[str, Any]:
        """Everything recorded (outcome, rounds, history, description, names, model usage,
        resolved config) as plain Python objects."""

class ExplanationGenerator:
    """Builds a loss, a gradient method and an optimiser by name and runs the optimisation,
    like MAXi's ``ExplanationGenerator``. Every name and kwarg is checked here: an unknown
    component, an unknown kwarg or a bad value raises ValueError naming it and what is
    accepted."""

    def __init__(
        self,
        loss: Union[str, type] = "CEMLoss",
        optimizer: Union[str, type] = "AdaExpGradOptimizer",
        gradient: Union[str, type] = "URVGradientEstimator",
        loss_kwargs: Optional[Mapping[str, Any]] = None,
        optimizer_kwargs: Optional[Mapping[str, Any]] = None,
        gradient_kwargs: Optional[Mapping[str, Any]] = None,
        num_iter: int = 30,
        save_freq: Union[int, float, None] = None,
        seed: int = 0,
        verbose: bool = False,
        search: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """
        Args:
            loss, optimizer, gradient: component names (canonical or MAXi class names), or
                classes (their ``__name__`` is used).
            loss_kwargs, optimizer_kwargs, gradient_kwargs: each component's kwargs (see
                ``list_components()``). Model kwargs (CEM's ``AE``) take a callable, an ONNX
                path or a :class:`Model`. ``loss_kwargs=None`` with CEM is MAXi's default
                ``{"mode": "PP", "gamma": 75, "K": 10}``.
            num_iter: number of updates.
            save_freq: savepoint every ``save_freq`` updates (besides the first and the last);
                None or ``float("inf")``: only those two.
            seed: seed of every random draw: same seed, same explanation.
            verbose: print one line per update to stderr.
            search: a search over CEM's ``c`` or the optimiser's ``l1`` (the CLI's
                ``[search]`` table as a dict).
        """
    def run(
        self, image: ArrayLike, inference_call: InferenceCall, meta_data: _M = None
    ) -> Tuple[Dict[str, np.ndarray], _M]:
        """Explains ``inference_call``'s prediction on ``image`` (one item, no batch axis).

        Returns ``(savepoints, meta_data)`` as MAXi does: ``savepoints`` maps the update number
        (a string, as in MAXi) to the explanation at that update. The full record is
        ``self.last_explanation``. A callable model gets float32 batches for a float32 image,
        else float64, and must return ``[B, classes]`` finite scores; an exception it raises
        is re-raised as is; a wrong shape or NaN raises RuntimeError naming the problem.
        """
    def explain(self, image: ArrayLike, inference_call: InferenceCall) -> Explanation:
        """Like :meth:`run`, but returns the full :class:`Explanation`."""
    @property
    def last_explanation(self) -> Optional[Explanation]:
        """The :class:`Explanation` of the last run (None before the first)."""
    @property
    def config(self) -> Dict[str, Any]:
        """The resolved configuration: canonical names, every kwarg with defaults, settings."""

def list_components(kind: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every registered component (of ``kind``: "loss", "gradient", "optimizer", "model"),
    each a dict with kind, name, aliases, doc, schema (the kwargs' JSON schema),
    kwarg_aliases and origin."""

def load_plugin(path: Union[str, "PathLike[str]"]) -> List[str]:
    """Loads a maxi plugin library (``.so``, C ABI v1), registers its components and returns
    their names; generators built afterwards can use them."""
