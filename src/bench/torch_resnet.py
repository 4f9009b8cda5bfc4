"""PyTorch reference for `misfit bench train`: the same CIFAR ResNet (option A
shortcuts), the same batch, the same SGD step, timed the same way.
Prints one JSON line. Used only as a benchmark reference, never by the product."""
import json, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

depth, width, size, batch, steps, warmup = (int(a) for a in sys.argv[1:7])
device = sys.argv[7] if len(sys.argv) > 7 else "cpu"
pgd_steps = int(sys.argv[8]) if len(sys.argv) > 8 else 0

class Block(nn.Module):
    def __init__(s, inp, out, stride):
        super().__init__()
        s.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False); s.bn1 = nn.BatchNorm2d(out)
        s.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False); s.bn2 = nn.BatchNorm2d(out)
        s.pad = (out - inp) // 2 if stride != 1 or inp != out else None
    def forward(s, x):
        o = F.relu(s.bn1(s.conv1(x))); o = s.bn2(s.conv2(o))
        sc = x if s.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, s.pad, s.pad))
        return F.relu(o + sc)

class ResNet(nn.Module):
    def __init__(s, depth, width, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        s.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False); s.bn1 = nn.BatchNorm2d(width)
        layers, inp = [], width
        for stage in range(3):
            out = width << stage
            for b in range(n):
                layers.append(Block(inp if b == 0 else out, out, 2 if b == 0 and stage > 0 else 1))
            inp = out
        s.layers = nn.Sequential(*layers); s.linear = nn.Linear(4 * width, classes)
    def forward(s, x):
        o = s.layers(F.relu(s.bn1(s.conv1(x))))
        return s.linear(o.mean((2, 3)))

torch.manual_seed(0)
model = ResNet(depth, width).to(device)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
x = torch.rand(batch, 3, size, size, device=device); y = torch.randint(0, 10, (batch,), device=device)
def sync():
    if device.startswith("cuda"): torch.cuda.synchronize()
def step():
    opt.zero_grad(set_to_none=True); loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
model.train()
for _ in range(warmup): step()
sync(); t = time.perf_counter()
for _ in range(steps): step()
sync(); train_s = (time.perf_counter() - t) / steps
model.eval()
with torch.no_grad():
    for _ in range(warmup): model(x)
    sync(); t = time.perf_counter()
    for _ in range(steps): model(x)
    sync(); infer_s = (time.perf_counter() - t) / steps
# PyTorch's other CPU configurations for the same step, each on a fresh model
# of the same seed: channels_last memory format, and bf16 autocast (oneDNN,
# AMX or AVX-512-BF16 where the CPU has them) on channels_last. The comparison
# is against the fastest.
def variant(channels_last, bf16):
    torch.manual_seed(0)
    m = ResNet(depth, width).to(device)
    xx = x
    if channels_last:
        m = m.to(memory_format=torch.channels_last); xx = x.contiguous(memory_format=torch.channels_last)
    o = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    def st():
        o.zero_grad(set_to_none=True)
        with torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(m(xx), y)
        loss.backward(); o.step()
    m.train()
    for _ in range(warmup): st()
    sync(); t = time.perf_counter()
    for _ in range(steps): st()
    sync(); return batch / ((time.perf_counter() - t) / steps)
variants = {"f32 eager": batch / train_s}
if not pgd_steps:
    variants["f32 channels_last"] = variant(True, False)
    try:
        variants["bf16 autocast channels_last"] = variant(True, True)
    except RuntimeError as e:  # no bf16 kernels for this device
        print(f"bf16 autocast unavailable: {e}", file=sys.stderr)
out = {"torch": torch.__version__, "threads": torch.get_num_threads(),
       "train_step_s": train_s, "train_img_s": batch / train_s, "infer_img_s": batch / infer_s,
       "train_variants": variants}
if pgd_steps:
    # PGD L-inf, 8/255, random start, pgd_steps steps and a final check, as
    # misfit's loop does (whose benchmark makes every image take every step).
    for p in model.parameters(): p.requires_grad_(False)
    eps, alpha = 8 / 255, 2.5 * 8 / 255 / pgd_steps
    with torch.no_grad(): labels = model(x).argmax(1)
    def pgd():
        d = (torch.rand_like(x) * 2 - 1) * eps
        d = (x + d).clamp(0, 1) - x
        for _ in range(pgd_steps):
            d.requires_grad_(True)
            loss = F.cross_entropy(model(x + d), labels, reduction="sum")
            g, = torch.autograd.grad(loss, d)
            d = (d.detach() + alpha * g.sign()).clamp(-eps, eps)
            d = (x + d).clamp(0, 1) - x
        with torch.no_grad(): return model(x + d).argmax(1)
    for _ in range(warmup): pgd()
    sync(); t = time.perf_counter()
    for _ in range(steps): pgd()
    sync(); out["pgd_img_s"] = batch * steps / (time.perf_counter() - t)
print(json.dumps(out))
