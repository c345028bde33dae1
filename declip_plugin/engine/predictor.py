"""The detector of a finished run, built on demand: what the report's mask galleries and video strips
predict with when a run kept no masks of its own (`declip predict` is the command for new images)."""
from ..run_folder import BEST_CHECKPOINT, RunDir


class RunPredictor:
    """The detector of the run directory ``run_dir`` (its ``config``: the run's config.yaml), built once on the
    CPU from the run's best checkpoint, else the weights its run.json names (a `declip test` run).
    ``error`` says why there is none."""

    def __init__(self, run_dir, config):
        self.run, self.config, self.detector, self.error = RunDir(run_dir), config, None, None

    def load(self):
        """The run's detector in eval mode, or None (``self.error`` says why)."""
        if self.detector is None and self.error is None:
            weights = self.run.checkpoint()
            if weights is None:
                self.error = f"no checkpoint in the run ({BEST_CHECKPOINT}) and no saved masks"
            else:
                from ..detectors import build_detector

                self.detector = build_detector({**self.config, "device": "cpu"}, weights_path=weights).eval()
        return self.detector

    def mask(self, image_tensor):
        """The predicted manipulation probability map (H, W numpy) of one normalised image tensor (3, H, W);
        None when the run has no detector or it gives no mask (``self.error`` says which)."""
        import torch

        if self.load() is None:
            return None
        with torch.inference_mode():
            pred = self.detector({"image": image_tensor[None], "label": torch.zeros(1, dtype=torch.long)},
                                 inference=True)
        if pred.get("mask") is None:
            self.error = "the detector gives no mask"
            return None
        return torch.sigmoid(pred["mask"].float())[0, 0].numpy()
