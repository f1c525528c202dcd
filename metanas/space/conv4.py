"""MAML's fixed 4-layer conv net (Finn et al. 2017), the fixed-architecture baseline.

Same interface as ``Network`` (``derive`` returns ``None``: there is no search space), so it is
meta-trained and evaluated by exactly the same code. BatchNorm uses batch statistics (no running
statistics inside ``torch.func``); its affine parameters are meta-learned as in MAML.
"""

from torch import nn

from metanas.space.ops import bn


class Conv4(nn.Module):
    genotype_ = None
    is_supernet = False

    def __init__(self, n_classes: int, channels: int = 64, in_channels: int = 1):
        super().__init__()
        layers, c = [], in_channels
        for _ in range(4):
            layers += [nn.Conv2d(c, channels, 3, padding=1), bn(channels, affine=True), nn.ReLU(), nn.MaxPool2d(2)]
            c = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, n_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean((-2, -1)))

    def derive(self, params, k: int = 2):
        return None
