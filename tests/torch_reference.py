"""Plain PyTorch versions of the seed's architectures, used as the reference in test_interop.py.

Written from the architecture descriptions in minijax.models (and torchvision's documented
ResNet layout, since torchvision is not installed here), with the seed's module names so their
state_dicts have the keys a seed .pth has. Checked since against the seed's own model code:
ComplexCNN's dropout is 0.4 and it builds a SelfAttention(128) that its forward never calls
(`attention.*`, 20,641 parameters outside the seed's 905,364); ResNet initialises its convs and
BatchNorms as torchvision's ResNet.__init__ does.
"""
import torch
from torch import nn
from torch.nn import functional as F


class ImprovedCNN(nn.Module):
  """conv(3->32)-pool, conv(32->64)-pool, conv(64->128)-pool, flatten (C,H,W), fc 512, fc."""

  def __init__(self, num_classes: int = 50, image_size: int | tuple[int, int] = 256):
    super().__init__()
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
    self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
    self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
    self.pool = nn.MaxPool2d(2)
    self.fc1 = nn.Linear(128 * (height // 8) * (width // 8), 512)
    self.dropout = nn.Dropout(0.5)
    self.fc2 = nn.Linear(512, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for conv in (self.conv1, self.conv2, self.conv3):
      x = self.pool(F.relu(conv(x)))
    x = torch.flatten(x, 1)
    x = self.dropout(F.relu(self.fc1(x)))
    return self.fc2(x)


class SpatialAttention(nn.Module):
  """CBAM-style gate: sigmoid(conv7x7([mean over C, max over C]))."""

  def __init__(self, kernel_size: int = 7):
    super().__init__()
    self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
    return torch.sigmoid(self.conv(pooled))


class ResidualBlock5(nn.Module):
  """Five 3x3 convs with ReLU between them (not after the last); out * 0.2 + x."""

  def __init__(self, channels: int = 128):
    super().__init__()
    for i in range(1, 6):
      setattr(self, f"layer{i}", nn.Conv2d(channels, channels, 3, padding=1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out = x
    for i in range(1, 6):
      out = getattr(self, f"layer{i}")(out)
      if i < 5:
        out = F.relu(out)
    return out * 0.2 + x


class SelfAttention(nn.Module):
  """SAGAN-style self-attention: gamma * (value @ softmax(query^T key)^T) + x, gamma from 0."""

  def __init__(self, channels: int = 128):
    super().__init__()
    self.query_conv = nn.Conv2d(channels, channels // 8, 1)
    self.key_conv = nn.Conv2d(channels, channels // 8, 1)
    self.value_conv = nn.Conv2d(channels, channels, 1)
    self.gamma = nn.Parameter(torch.zeros(1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x.shape
    query = self.query_conv(x).flatten(2).transpose(1, 2)       # (B, HW, C/8)
    key = self.key_conv(x).flatten(2)                           # (B, C/8, HW)
    attention = torch.softmax(torch.bmm(query, key), dim=-1)    # (B, HW, HW)
    value = self.value_conv(x).flatten(2)                       # (B, C, HW)
    out = torch.bmm(value, attention.transpose(1, 2)).view(batch, channels, height, width)
    return self.gamma * out + x


class ComplexCNN(nn.Module):
  """The seed's ComplexCNN; `attention` is built (its keys are in every seed .pth), never called."""

  def __init__(self, num_classes: int = 50):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
    self.conv2 = nn.Conv2d(64, 128, 3, padding=1)
    self.pool = nn.MaxPool2d(2)
    self.sa = SpatialAttention()
    self.attention = SelfAttention(128)
    self.rrdb = ResidualBlock5(128)
    self.dropout = nn.Dropout(0.4)
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc1 = nn.Linear(128, 512)
    self.fc2 = nn.Linear(512, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.pool(F.relu(self.conv1(x)))
    x = self.pool(F.relu(self.conv2(x)))
    x = self.sa(x) * x
    x = self.dropout(self.rrdb(x))
    x = torch.flatten(self.avgpool(x), 1)
    return self.fc2(F.relu(self.fc1(x)))


class BasicBlock(nn.Module):
  """torchvision's BasicBlock: conv3x3-bn-relu-conv3x3-bn, + (downsampled) identity, relu."""

  def __init__(self, inplanes: int, planes: int, stride: int = 1):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = None
    if stride != 1 or inplanes != planes:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(planes))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + identity)


class ResNet(nn.Module):
  """torchvision.models.ResNet with BasicBlocks; attribute names match torchvision's."""

  def __init__(self, layers: tuple[int, int, int, int], num_classes: int = 1000):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    inplanes = 64
    for stage, num_blocks in enumerate(layers):
      planes = 64 * 2**stage
      stride = 1 if stage == 0 else 2
      blocks = [BasicBlock(inplanes, planes, stride)]
      blocks += [BasicBlock(planes, planes) for _ in range(num_blocks - 1)]
      setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
      inplanes = planes
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(512, num_classes)
    # torchvision's ResNet.__init__ (zero_init_residual=False); fc keeps nn.Linear's default.
    for module in self.modules():
      if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
      elif isinstance(module, nn.BatchNorm2d):
        nn.init.constant_(module.weight, 1)
        nn.init.constant_(module.bias, 0)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    for stage in range(1, 5):
      x = getattr(self, f"layer{stage}")(x)
    return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet34(num_classes: int = 1000) -> ResNet:
  return ResNet((3, 4, 6, 3), num_classes)


def resnet18(num_classes: int = 1000) -> ResNet:
  return ResNet((2, 2, 2, 2), num_classes)
