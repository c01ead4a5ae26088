"""A fastobj objective in a Captum-style optimization loop.

Captum's optim module hooks the modules named by the objective's ``.target``, runs the model on
the transformed image, and calls the objective with the ``{module: activation}`` mapping the
hooks captured. fastobj objectives take the same mapping, so the loop is unchanged: this is
what ``InputOptimization.optimize`` does, written out. Targets here are module objects; the
image parameterization is a module too, so an image prior can target it directly.

Run: python examples/captum_style_loop.py   (a few seconds on a CPU)
"""
import torch

from fastobj import ChannelActivation, ModuleOutputsHook, TotalVariation, default_loss_summarize
from fastobj.loss import targets_of
from fastobj.render import FFTImage, default_transforms, demo_cnn

model = demo_cnn().requires_grad_(False)
image = FFTImage(4, 48, seed=0)
loss_fn = ChannelActivation(model.features[6], 3) - 1e-4 * TotalVariation(image)

torch.manual_seed(0)
transform = default_transforms()
optimizer = torch.optim.Adam(image.parameters(), lr=0.05)
history = []
with ModuleOutputsHook(targets_of(loss_fn)) as hooks:  # hooks are removed when the block ends
    for step in range(16):
        optimizer.zero_grad()
        model(transform(image()))
        loss = default_loss_summarize(loss_fn(hooks.consume_outputs()))  # -mean, minimised
        loss.backward()
        optimizer.step()
        history.append(loss.item())
print(f"loss: first {history[0]:.4f}, last {history[-1]:.4f}")
print("images:", tuple(image().detach().shape))
