"""Measure what each detail level needs: can a small classifier read the answer at low resolution?

For each task family and detail level this script generates ``n`` samples at 256 px, takes the
first question about that detail level (``qa[0]``, the family's signature question; its answer
depends on the image alone) and trains the same small conv net, with the same budget, twice: on
(a) the high-res 256 px pixels and (b) the low-res view, the 256 -> 64 px antialiased bilinear
resize the hybrid encoder feeds SigLIP. 80% of the samples train, 20% test.

Expected: ``coarse`` answers are readable from both views; ``fine`` answers stay at chance from
the low-res view but are learned from the high-res view. "Chance" is the best accuracy a constant
answer reaches on the test split (the frequency of its most common answer: no classifier without
information can expect more); "near chance" means within 3 binomial standard errors above it,
"clearly above" means beyond that.

The classifier (``TextureNet``): a stem onto a 64 x 64 grid (4x4 conv with stride 4 on the
256 px image, 1x1 conv on the 64 px view), then the same trunk for both: three 3x3 convs with
max-pooling, a max-pool onto a 4 x 4 grid (keeps "where") and a global average (keeps "how
much"), one linear layer. A linear model on raw pixels could not find a texture at a random
place; this net learns the fine designs in seconds, and reads big words from either view.
"""
from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dsvl_lab.data.tasks import DETAILS, FAMILIES, generate_samples
from dsvl_lab.model.vision import resize_antialiased
from ..atomic import write_json_atomic

HIGH_SIZE, LOW_SIZE = 256, 64
EXAMPLE = """Example:
  python -m dsvl_lab.data.detail_check --family ocr --family chart --n 600 --out /tmp/detail_check.json
  python -m dsvl_lab.data.detail_check --n 600 --out data_samples/detail_check.json   # all families
"""


# ============================================================================ the classifier
class TextureNet(nn.Module):
    """A small conv net that can find 1-pixel textures anywhere and still knows roughly where.

    The stem maps the input onto a 64 x 64 grid, one position per low-res pixel: for a 256 px image
    a 4x4 conv with stride 4 (each window holds two periods of a 1-px pattern, in the same phase
    everywhere, so one filter is a texture detector), for the 64 px low-res view a 1x1 conv. The
    trunk after the stem is the same for both, so the two nets differ only in what the stem sees:
    the 16 pixels behind each low-res pixel, or their antialiased average.
    """

    def __init__(self, num_classes: int, input_size: int = HIGH_SIZE) -> None:
        super().__init__()
        stride = input_size // LOW_SIZE
        self.stem = nn.Sequential(nn.Conv2d(3, 32, stride, stride=stride), nn.BatchNorm2d(32), nn.ReLU())  # 64x64
        self.trunk = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        )
        self.where = nn.AdaptiveMaxPool2d(4)  # [N, 64, 4, 4]: which region holds a feature
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(64 * 16 + 64, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.trunk(self.stem(images - 0.5))  # [N, 64, 16, 16]
        pooled = torch.cat([self.where(feats).flatten(1), feats.mean(dim=(2, 3))], dim=1)
        return self.head(pooled)


def train_and_test(x_train, y_train, x_test, y_test, num_classes: int, epochs: int, budget_s: float, seed: int,
                   lr: float = 1e-3, batch_size: int = 32) -> dict:
    """Train a fresh TextureNet; returns test accuracy and what the budget allowed."""
    torch.manual_seed(seed)
    model = TextureNet(num_classes, input_size=x_train.shape[-1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        return batch.float() / 255 if batch.dtype == torch.uint8 else batch

    start, steps, epoch = time.perf_counter(), 0, 0
    out_of_time = False
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for first in range(0, len(order), batch_size):
            index = order[first:first + batch_size]
            loss = F.cross_entropy(model(prepare(x_train[index])), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() - start > budget_s:
                out_of_time = True
                break
        if out_of_time:
            break
    train_s = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for first in range(0, len(x_test), 64):
            logits = model(prepare(x_test[first:first + 64]))
            correct += int((logits.argmax(1) == y_test[first:first + 64]).sum())
    return {"accuracy": correct / len(x_test), "epochs": epoch, "steps": steps, "train_s": round(train_s, 1),
            "out_of_time": out_of_time}


# ============================================================================ one (family, detail)
def load_task(family: str, detail: str, n: int, start_seed: int):
    """Generate samples; returns (uint8 images [n, 3, 256, 256], answers, qa kind, mean #options, seconds)."""
    start = time.perf_counter()
    samples = generate_samples(family, n, start_seed=start_seed, detail=detail, image_size=HIGH_SIZE)
    seconds = time.perf_counter() - start
    turns = [next(qa for qa in s.qa if qa.detail == detail) for s in samples]
    kinds = {qa.kind for qa in turns}
    if len(kinds) != 1:
        raise RuntimeError(f"{family}/{detail}: the first {detail} questions are of several kinds {kinds}")
    images = torch.from_numpy(np.stack([np.asarray(s.image) for s in samples])).permute(0, 3, 1, 2).contiguous()
    return images, [qa.answer for qa in turns], kinds.pop(), float(np.mean([len(qa.options) for qa in turns])), seconds


def check(family: str, detail: str, n: int, epochs: int, budget_s: float, seed: int, log, lr: float = 1e-3) -> dict:
    """Train on high-res and low-res views of one task; returns a result row."""
    images, answers, kind, mean_options, gen_s = load_task(family, detail, n, start_seed=seed * 1_000_003)
    classes = sorted(set(answers))
    labels = torch.tensor([classes.index(a) for a in answers])
    cut = int(0.8 * n)
    # The low-res view exactly as the hybrid encoder makes it (float, antialiased bilinear).
    low = torch.cat([resize_antialiased(images[i:i + 100].float() / 255, LOW_SIZE) for i in range(0, n, 100)])

    # Chance: the best any constant answer does on this test split (no image needed). A classifier
    # without information about the answer cannot expect more than that.
    chance = float(torch.bincount(labels[cut:], minlength=len(classes)).max()) / (n - cut)
    threshold = chance + 3 * math.sqrt(chance * (1 - chance) / (n - cut))  # 3 standard errors above
    row = {"family": family, "detail": detail, "question": kind, "classes": len(classes),
           "mean_options": round(mean_options, 2), "n_train": cut, "n_test": n - cut, "chance": round(chance, 3),
           "threshold": round(threshold, 3), "generate_s": round(gen_s, 1)}
    log(f"  {family}/{detail}: {n} samples in {gen_s:.1f} s, question '{kind}', {len(classes)} answers, "
        f"chance {chance:.2f}")
    for name, pixels in (("high", images), ("low", low)):
        result = train_and_test(pixels[:cut], labels[:cut], pixels[cut:], labels[cut:], len(classes), epochs,
                                budget_s, seed, lr)
        row[name] = result
        log(f"    {name:4s}-res ({HIGH_SIZE if name == 'high' else LOW_SIZE} px): accuracy "
            f"{result['accuracy']:.2f} after {result['epochs']} epochs / {result['steps']} steps "
            f"in {result['train_s']:.0f} s")
    above = {name: row[name]["accuracy"] > threshold for name in ("high", "low")}
    if detail == "fine":
        row["expected"] = "low near chance, high clearly above"
        row["ok"] = bool(above["high"] and not above["low"])
    else:
        row["expected"] = "low clearly above chance"
        row["ok"] = bool(above["low"])
    return row


# ============================================================================ output
def markdown_table(rows: list[dict]) -> str:
    lines = ["| family | detail | question (answers) | chance | low-res 64 px | high-res 256 px | expected | ok |",
             "|---|---|---|---|---|---|---|---|"]
    def accuracy(result: dict) -> str:  # a dagger marks a classifier stopped by --budget-s
        return f"{result['accuracy']:.2f}" + (" †" if result["out_of_time"] else "")

    for r in rows:
        lines.append(f"| {r['family']} | {r['detail']} | {r['question']} ({r['classes']}) | {r['chance']:.2f} | "
                     f"{accuracy(r['low'])} | {accuracy(r['high'])} | {r['expected']} | "
                     f"{'yes' if r['ok'] else '**NO**'} |")
    if any(r[name]["out_of_time"] for r in rows for name in ("low", "high")):
        lines.append("\n† stopped by the time budget before its last epoch")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dsvl_lab.data.detail_check", description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", action="append", choices=FAMILIES,
                        help="task family to check (repeat for several; default: all five)")
    parser.add_argument("--detail", action="append", choices=DETAILS, help="detail level (default: both)")
    parser.add_argument("--n", type=int, default=600, help="samples per (family, detail); 80%% train, 20%% test")
    parser.add_argument("--epochs", type=int, default=10,
                        help="training epochs per classifier (default 10: 150 steps at n=600, ~10-25 s on 2 cores)")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="safety cap per classifier in seconds (default 300); a run that hits it is marked")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3; 3e-3 is unstable)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data (seed * 1000003 onwards) and training")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here (atomically)")
    args = parser.parse_args(argv)
    if args.n < 50:
        parser.error(f"--n must be at least 50 (got {args.n}): the 20% test split would be too small to judge")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    families, details = args.family or list(FAMILIES), args.detail or list(DETAILS)

    def log(message: str) -> None:
        print(message, flush=True)

    command = "python -m dsvl_lab.data.detail_check " + " ".join(sys.argv[1:] if argv is None else argv)
    log(f"detail check: {len(families)} families x {len(details)} details, n={args.n}, "
        f"epochs={args.epochs}, lr={args.lr:g}, budget {args.budget_s:.0f} s per classifier, "
        f"{torch.get_num_threads()} threads")
    start = time.perf_counter()
    rows = []
    for family in families:
        for detail in details:
            rows.append(check(family, detail, args.n, args.epochs, args.budget_s, args.seed, log, args.lr))
    seconds = time.perf_counter() - start
    table = markdown_table(rows)
    print()
    print(table)
    print(f"\n{sum(r['ok'] for r in rows)}/{len(rows)} as expected; total {seconds:.0f} s")
    if args.out:
        write_json_atomic(args.out, {
            "command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "seconds": round(seconds, 1), "n": args.n, "epochs": args.epochs, "budget_s": args.budget_s, "lr": args.lr,
            "seed": args.seed, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.platform(), "rows": rows, "markdown": table})
        print(f"results written to {args.out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
