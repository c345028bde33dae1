"""Test harness for DeepfakeBench's train.py on a CPU-only machine (tests only, never the library).

Put this folder on the child's PYTHONPATH; Python imports ``sitecustomize`` at start-up, in the
`declip dfb` child and in its data-loader workers. With $DECLIP_TEST_STUB_CUDA=1 the CUDA calls
DeepfakeBench's train.py and Trainer make are stubbed: ``torch.cuda.is_available`` says yes to the
launcher's check before it starts train.py ($DECLIP_CUDA_PROBE), ``torch.cuda.set_device`` (at import of
train.py) does nothing, ``Tensor.cuda()`` / ``Module.cuda()`` return the object unchanged. With
$DECLIP_TEST_START_METHOD=spawn|forkserver the multiprocessing start method is set (data-loader
workers then re-import the child's main module instead of forking it).
"""
import os

if os.environ.get("DECLIP_TEST_STUB_CUDA") == "1":
    import torch

    if os.environ.get("DECLIP_CUDA_PROBE") == "1":  # the launcher's check before it starts train.py
        torch.cuda.is_available = lambda: True
    torch.cuda.set_device = lambda *args, **kwargs: None
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self

if os.environ.get("DECLIP_TEST_START_METHOD"):
    import multiprocessing

    multiprocessing.set_start_method(os.environ["DECLIP_TEST_START_METHOD"], force=True)
