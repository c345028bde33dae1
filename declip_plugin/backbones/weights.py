"""Finding and reading OpenAI-format CLIP weights: open_clip's cache, a local file, or a clear error.

Reading a checkpoint file and strict loading into a module live in :mod:`declip_plugin.checkpoints`.

Nothing here waits on the network: when the weights are not on disk, a 3-second probe decides
whether a download is attempted at all; otherwise the error says which file to put where.
"""
import logging
import os
import socket
import threading
from urllib.parse import urlparse

import torch

from ..checkpoints import read_checkpoint
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
