"""Reference for misfit's last-layer TracIn: a direct PyTorch computation.

usage: influence_reference.py MODEL.safetensors INPUT.safetensors OUT.safetensors

INPUT holds `train_images` uint8 [n, H, W, 3] (RGB, HWC), `train_labels`
int64 [n], `test_images` uint8 [m, H, W, 3], `test_targets` int64 [m] (the
class each test image's loss is taken at). The CIFAR ResNet (option-A
shortcuts, as in the shared model's README) is built here in PyTorch from
MODEL's state dict; its pooled features h and softmax p give, in float64,

    influence[b, a] = ((p_a - y_a) . (p_b - y_b)) * (h_a . h_b + 1)
    self_influence[a] = |p_a - y_a|^2 * (|h_a|^2 + 1)

written to OUT as `influence` float64 [m, n] and `self_influence` float64 [n]
(and `train_features` float32 [n, dim] for diagnosis); the same from the
features INPUT gives (`train_features` float32 [n, dim], `test_features`
[m, dim]: misfit's) as `influence_given_features` and
`self_influence_given_features`, the formula alone on the same features.
"""

import json
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def bn(x, sd, name):
    return F.batch_norm(
        x,
        sd[f"{name}.running_mean"],
        sd[f"{name}.running_var"],
        sd[f"{name}.weight"],
        sd[f"{name}.bias"],
        training=False,
        eps=1e-5,
    )


def block(x, sd, name, stride):
    out = F.relu(bn(F.conv2d(x, sd[f"{name}.conv1.weight"], stride=stride, padding=1), sd, f"{name}.bn1"))
    out = bn(F.conv2d(out, sd[f"{name}.conv2.weight"], stride=1, padding=1), sd, f"{name}.bn2")
    planes = out.shape[1]
    if stride != 1 or x.shape[1] != planes:
        pad = (planes - x.shape[1]) // 2
        short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, planes - x.shape[1] - pad))
    else:
        short = x
    return F.relu(out + short)


def features(images, sd, mean, std):
    x = torch.from_numpy(images).float().div(255.0).permute(0, 3, 1, 2)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], padding=1), sd, "bn1"))
    stages = sorted({k.split(".")[0] for k in sd if k.startswith("layer")})
    for s, stage in enumerate(stages):
        blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith(stage + ".")})
        for b in blocks:
            x = block(x, sd, f"{stage}.{b}", 2 if (b == 0 and s > 0) else 1)
    return x.mean(dim=(2, 3))


def main():
    model_path, input_path, out_path = sys.argv[1:4]
    sd = load_file(model_path)
    with safe_open(model_path, "pt") as f:
        meta = f.metadata() or {}
    parse = lambda key, default: [float(v) for v in meta[key].split(",")] if key in meta else default
    mean = parse("mean", [0.485, 0.456, 0.406])
    std = parse("std", [0.229, 0.224, 0.225])
    data = load_file(input_path)
    torch.set_grad_enabled(False)
    w = sd["linear.weight"].double()
    b = sd["linear.bias"].double()
    k = w.shape[0]

    def factors(images, targets, given=None):
        h = features(images.numpy(), sd, mean, std) if given is None else given
        logp = torch.log_softmax(h.double() @ w.T + b, dim=1)
        onehot = F.one_hot(targets, k).double()
        # p - y, with the target's p_t - 1 as expm1(log p_t): exact where p_t
        # rounds to 1 (a well-fit training image), as p_t - 1 is not.
        r = logp.exp() * (1 - onehot) + onehot * torch.expm1(logp)
        a = torch.cat([h.double(), torch.ones(h.shape[0], 1, dtype=torch.float64)], dim=1)
        return h, r, a

    out = {}
    for suffix, given in [("", None), ("_given_features", True)]:
        tf = data["train_features"] if given else None
        qf = data["test_features"] if given else None
        h_train, r_train, a_train = factors(data["train_images"], data["train_labels"], tf)
        _, r_test, a_test = factors(data["test_images"], data["test_targets"], qf)
        out["influence" + suffix] = ((r_test @ r_train.T) * (a_test @ a_train.T)).contiguous()
        out["self_influence" + suffix] = ((r_train * r_train).sum(1) * (a_train * a_train).sum(1)).contiguous()
        out["train_features" + suffix] = h_train.float().contiguous()
    save_file(out, out_path)
    print(json.dumps({"train": int(r_train.shape[0]), "test": int(r_test.shape[0]), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
