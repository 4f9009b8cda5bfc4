#!/usr/bin/env python3
"""A class-balanced, seeded subset of the shared CIFAR-10 archive, for
measuring recipe choices (docs/recipe.md) before a full run.

    python3 scripts/cifar-subset.py ../shared/datasets/cifar10-jpeg.tar.gz \
        data/cifar10-sub10k.tar.gz --train-per-class 1000 --test-per-class 200 --seed 0

Writes a tar.gz in the same ImageFolder layout (train/<class>/NNNN.jpg,
test/<class>/NNNN.jpg), the JPEG bytes copied unchanged. Standard library only.
"""
import argparse
import io
import random
import sys
import tarfile


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("archive")
    ap.add_argument("out")
    ap.add_argument("--train-per-class", type=int, default=1000)
    ap.add_argument("--test-per-class", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    per = {"train": a.train_per_class, "test": a.test_per_class}
    with tarfile.open(a.archive, "r:gz") as src:
        members = [m for m in src.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        groups = {}
        for m in members:
            parts = m.name.split("/")
            if len(parts) != 3 or parts[0] not in per:
                sys.exit(f"{a.archive}: {m.name}: not split/class/file.jpg")
            groups.setdefault((parts[0], parts[1]), []).append(m)
        rng = random.Random(a.seed)
        chosen = []
        for key in sorted(groups):
            names = sorted(groups[key], key=lambda m: m.name)
            n = per[key[0]]
            if n > len(names):
                sys.exit(f"{a.archive}: {key[0]}/{key[1]} has {len(names)} images, {n} asked")
            chosen += sorted(rng.sample(names, n), key=lambda m: m.name)
        with tarfile.open(a.out, "w:gz") as dst:
            for m in chosen:
                data = src.extractfile(m).read()
                info = tarfile.TarInfo(m.name)
                info.size = len(data)
                info.mtime = 0
                dst.addfile(info, io.BytesIO(data))
    print(f"{a.out}: {len(chosen)} images", file=sys.stderr)


if __name__ == "__main__":
    main()
