"""How fast is every registered view? Prints ms per image for `view` and `inverse` on one batch.

    python benchmarks/views_speed.py                 # (8, 4, 128, 128) float32, 1 thread
    python benchmarks/views_speed.py --threads 2 --size 256 --repeats 50

Each timing is the median over ``--repeats`` calls after a warm-up call (which builds and caches
permutations and blur matrices), divided by the batch size. Views that cannot act on the size
(or need parameters, like the generic ``permutation``) are benchmarked with a fitting instance.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from anagram.views import IndexPermutationView, available, get_view


def make_view(name: str, size: int, seed: int):
    """The registry's default view, or a fitting one where the defaults cannot act on ``size``."""
    if name == "permutation":  # needs an index array: a random pixel shuffle of the full size
        generator = torch.Generator().manual_seed(seed)
        return IndexPermutationView(torch.randperm(size * size, generator=generator), size, size)
    view = get_view(name)
    if name == "pixel_permute" and view.size_problem(size, size):
        view = get_view(name, size=size)
    return view


def timings_ms(fn, repeats: int) -> tuple[float, float]:
    """``(median, min)`` milliseconds of ``fn()`` over ``repeats`` calls after a warm-up call."""
    fn()  # warm-up: builds the cached index arrays / matrices
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, args.channels, args.size, args.size, device=args.device)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    print(f"views on a {tuple(x.shape)} float32 batch, {args.device}, {torch.get_num_threads()} thread(s), "
          f"median of {args.repeats} (and min): ms per image")
    print(f"{'view':18s} {'view()':>9s} {'inverse()':>10s}   {'(min view / inverse)':>22s}")
    worst = 0.0
    for name in available():
        view = make_view(name, args.size, seed=0)
        problem = view.size_problem(args.size, args.size)
        if problem:
            print(f"{name:18s} skipped: {problem}")
            continue
        forward, forward_min = (t / args.batch for t in timings_ms(lambda: (view.view(x), sync()), args.repeats))
        backward, backward_min = (t / args.batch for t in timings_ms(lambda: (view.inverse(x), sync()), args.repeats))
        worst = max(worst, forward, backward)
        print(f"{name:18s} {forward:9.4f} {backward:10.4f}   {forward_min:10.4f} / {backward_min:.4f}")
    print(f"slowest median: {worst:.4f} ms per image")


if __name__ == "__main__":
    main()
