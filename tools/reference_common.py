"""What tools/layer_reference.py and tools/backprop_reference.py share: the demo CNN as an eager
module, and seeded inputs saved with the model's predicted classes as targets."""
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def demo_model():
    """The demo CNN (models/train_demo.py's FashionCNN) with the bundled TorchScript's weights."""
    from train_demo import FashionCNN
    demo = FashionCNN().eval()
    demo.load_state_dict(torch.jit.load(os.path.join(HERE, "..", "models", "fashion_cnn.pt")).state_dict())
    return demo


def seeded_inputs(out, prefix, model, shape, seed):
    """torch.randn(shape) after manual_seed(seed) (seed None: the current generator), saved as
    OUT/<prefix>_input.npy with the predicted classes as OUT/<prefix>_targets.npy."""
    if seed is not None:
        torch.manual_seed(seed)
    x = torch.randn(*shape)
    with torch.no_grad():
        targets = model(x).argmax(1)
    np.save(os.path.join(out, f"{prefix}_input.npy"), x.numpy())
    np.save(os.path.join(out, f"{prefix}_targets.npy"), targets.numpy().astype(np.float32))
    return x, targets
