"""A fastobj objective inside a Lucent-style optimization loop.

Lucent hooks every layer of the model, names the layers with "_" instead of "." ("features_6"),
and calls an objective function with ``T``, where ``T(name)`` returns that layer's activation;
the function returns the scalar to minimise. ``fastobj.render.lucent_objective`` turns a fastobj
objective (whose targets are those names) into such a function. With Lucent installed, wrap it
with ``lucent.optvis.objectives.as_objective`` and pass it to ``render.render_vis``; this script
writes the loop out so that it runs without Lucent.

Run: python examples/lucent_style_loop.py   (a few seconds on a CPU)
"""
import torch

from fastobj import ChannelActivation, Diversity
from fastobj.render import FFTImage, default_transforms, demo_cnn, lucent_objective


def hook_model(model):
    """Lucent-style hooks: T(name) is the latest output of the layer named `name`."""
    outputs, handles = {}, []
    for name, module in model.named_modules():
        if name:
            key = name.replace(".", "_")
            handles.append(module.register_forward_hook(
                lambda mod, inp, out, key=key: outputs.__setitem__(key, out)))
    return outputs.__getitem__, handles


model = demo_cnn().requires_grad_(False)
objective = lucent_objective(ChannelActivation("features_6", 3) + 10 * Diversity("features_5"))

torch.manual_seed(0)
image = FFTImage(4, 48, seed=0)
transform = default_transforms()
optimizer = torch.optim.Adam(image.parameters(), lr=0.05)
T, handles = hook_model(model)
try:
    for step in range(16):
        optimizer.zero_grad()
        model(transform(image()))
        loss = objective(T)  # -(channel mean + 10 * diversity), as Lucent minimises it
        loss.backward()
        optimizer.step()
        if step % 5 == 0 or step == 15:
            print(f"step {step:2d}  loss {loss.item():.4f}")
finally:
    for handle in handles:
        handle.remove()
print("images:", tuple(image().shape))
