"""Reading OpenAI-format CLIP weights: open_clip's cache, a local file, or a clear error.

Nothing here waits on the network: when the weights are not on disk, a 3-second probe decides
whether a download is attempted at all; otherwise the error says which file to put where.
"""
import logging
import os
import socket
import threading
from urllib.parse import urlparse

import torch

from ..errors import CheckpointError

logger = logging.getLogger(__name__)

OPENAI_CACHE = os.path.join("~", ".cache", "clip")


def _network_up(url, timeout=3.0):
    """Whether ``url``'s host answers within ``timeout`` seconds (DNS included: run in a thread)."""
    host = urlparse(url).hostname
    if not host or os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("DECLIP_OFFLINE") == "1":
        return False
    result = []

    def probe():
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            pass

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result)


def resolve_openai_weights(oc_name, display_name):
    """The path of the OpenAI weights of open_clip model ``oc_name``; download only if reachable."""
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(oc_name, "openai")
    if not cfg:
        tags = oc_pretrained.list_pretrained_tags_by_model(oc_name)
        raise CheckpointError(
            f"backbone {display_name!r} has no 'openai' weights in open_clip (tags: {', '.join(tags) or 'none'}); "
            f"set pretrained to a local checkpoint file or to none"
        )
    url = cfg.get("url", "")
    cache_dir = os.path.expanduser(os.environ.get("DECLIP_CLIP_CACHE", OPENAI_CACHE))
    target = os.path.join(cache_dir, os.path.basename(url)) if url else ""
    if target and os.path.isfile(target):
        return target
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache

            repo_id, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
            for fname in ([filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
                found = try_to_load_from_cache(repo_id, fname)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
        except Exception:  # pragma: no cover - huggingface_hub missing or its cache unreadable
            pass
    if url and _network_up(url):
        logger.info("downloading OpenAI CLIP weights for %s to %s", display_name, cache_dir)
        return oc_pretrained.download_pretrained_from_url(url, cache_dir=cache_dir)
    raise CheckpointError(
        f"OpenAI CLIP weights for {display_name!r} are not on this machine and the network is unreachable: "
        f"download {url or hub} and put it at {target or cache_dir} (or set DECLIP_CLIP_CACHE to its folder), "
        f"or set `pretrained:` to the path of an OpenAI-format checkpoint"
    )


def read_checkpoint(path, what="checkpoint"):
    """``torch.load(weights_only=True)`` with errors that name the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - turn every load failure into a clear message
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL" in text:  # a well-formed pickle that wants to run code
            raise CheckpointError(
                f"{what} {path!r} needs arbitrary pickled objects, which are refused for safety "
                f"(torch.load weights_only=True). Re-save it as a plain dict of tensors/numbers/strings."
            ) from exc
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise CheckpointError(f"{what} {path!r} is corrupt or not a PyTorch file ({first[:120]}): re-download or "
                              f"re-save it") from exc


def load_openai_state_dict(path):
    """State dict of an OpenAI-format CLIP file: a TorchScript archive or a (wrapped) state dict."""
    if not os.path.isfile(path):
        raise CheckpointError(f"pretrained weights file {path!r} does not exist")
    try:
        archive = torch.jit.load(path, map_location="cpu")
        state = archive.state_dict()
    except RuntimeError:
        state = read_checkpoint(path, "pretrained weights file")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"pretrained weights file {path!r} holds no state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_module_weights(module, state, source, droppable=(), what="backbone"):
    """Load ``state`` into ``module`` strictly, tolerating only keys of layers cut off after the tap.

    Missing keys, unexpected keys and shape mismatches are errors that list them.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not any(k.startswith(p) for p in droppable)]
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(state[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_preview(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_preview(shapes)}")
    if problems:
        raise CheckpointError(f"{what} weights from {source} do not fit the configured {what}: " + "; ".join(problems))
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(state[k].to(dtype=v.dtype))


def _preview(items, n=8):
    items = list(items)
    more = f" ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
