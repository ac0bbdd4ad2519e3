"""Evaluation and training benchmark: persotool's full-ranking evaluation against
`lightfm.evaluation` and against a bare numpy floor, and persotool's LightFM training against bare
`LightFM.fit`, all on the same model and matrices in one run. Results:
benchmarks/results/evaluate.json (shown in docs/performance.md by `make docs`).

    python benchmarks/evaluate.py [--users 20000] [--items 10000] [--threads 1] [--epochs 5]

Every variant uses the same number of threads (`--threads`, which also sets OpenBLAS's pool).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "evaluate.json"


def make_data(users: int, items: int, per_user: int, seed: int = 0):
    """Implicit feedback from a latent-factor world with Zipf item popularity: each user's items are
    drawn with probability proportional to popularity x exp(affinity). 80/20 random split per pair."""
    import numpy as np
    import polars as pl
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, items + 1) ** 0.8
    rng.shuffle(pop)
    u = rng.normal(0, 1, (users, 8))
    v = rng.normal(0, 1, (items, 8))
    rows, cols = [], []
    for start in range(0, users, 2000):
        block = np.log(pop)[None, :] + 0.7 * (u[start : start + 2000] @ v.T)
        # Gumbel top-k: a sample without replacement from softmax(block)
        noisy = block + rng.gumbel(size=block.shape)
        counts = rng.poisson(per_user, size=len(block)).clip(5, 4 * per_user)
        top = np.argpartition(-noisy, 4 * per_user, axis=1)[:, : 4 * per_user]
        order = np.take_along_axis(noisy, top, axis=1).argsort(axis=1)[:, ::-1]
        top = np.take_along_axis(top, order, axis=1)
        for i, n in enumerate(counts):
            rows.append(np.full(n, start + i))
            cols.append(top[i, :n])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    test = rng.random(len(rows)) < 0.2
    shape = (users, items)
    train = sp.csr_matrix((np.ones((~test).sum(), dtype=np.float32), (rows[~test], cols[~test])), shape=shape)
    test_m = sp.csr_matrix((np.ones(test.sum(), dtype=np.float32), (rows[test], cols[test])), shape=shape)
    truth = pl.DataFrame({"user_idx": rows[test].astype(np.int64), "item_idx": cols[test].astype(np.int64)})
    return train, test_m, truth


def timed(fn, repeat: int = 1):
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--per-user", type=int, default=62, help="mean interactions per user (train + test)")
    parser.add_argument("--components", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="evaluation timings keep the best of this many")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before numpy loads

    import numpy as np
    import scipy.sparse as sp
    from lightfm import LightFM
    from lightfm.evaluation import auc_score, precision_at_k, recall_at_k

    from persotool.kernels.metrics.ranking import evaluate
    from persotool.kernels.models.factorization import LightFMModel

    t0 = time.perf_counter()
    train, test, truth = make_data(args.users, args.items, args.per_user)
    print(
        f"data: {args.users:,} users x {args.items:,} items, {train.nnz:,} train / {test.nnz:,} test "
        f"interactions ({time.perf_counter() - t0:.1f}s)",
        file=sys.stderr,
    )

    # --- training: persotool's LightFM bridge against bare LightFM.fit, same matrix and settings
    settings = {"no_components": args.components, "loss": "warp", "learning_rate": 0.05, "max_sampled": 10}

    def bare_fit():
        model = LightFM(**settings, random_state=np.random.RandomState(0))
        model.fit(sp.coo_matrix(train), epochs=args.epochs, num_threads=args.threads)
        return model

    def persotool_fit():
        model = LightFMModel(
            loss="warp",
            components=args.components,
            learning_rate=0.05,
            max_sampled=10,
            epochs=args.epochs,
            num_threads=args.threads,
            seed=0,
        )
        return model.fit(train)

    # alternate the two so machine drift hits both alike; keep each one's best
    bare_times, ours_times = [], []
    for _ in range(2):
        seconds, bare = timed(bare_fit)
        bare_times.append(seconds)
        seconds, ours = timed(persotool_fit)
        ours_times.append(seconds)
    fit_bare, fit_ours = min(bare_times), min(ours_times)
    print(f"fit: bare LightFM {fit_bare:.2f}s, persotool {fit_ours:.2f}s", file=sys.stderr)

    # --- evaluation of one model (persotool's) three ways
    seen = train.astype(bool).tocsr()
    users = np.unique(truth["user_idx"].to_numpy())
    metrics = [f"{m}@10" for m in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")] + ["auc"]
    ours_seconds, result = timed(
        lambda: evaluate(ours.score, seen, truth, metrics, n_items=args.items), repeat=args.repeat
    )

    user_f, item_f = ours.user_factors_, ours.item_factors_
    bias = ours.item_bias_

    def floor():
        out = np.empty((len(users), 10), dtype=np.int32)
        for start in range(0, len(users), 1024):
            block = users[start : start + 1024]
            scores = user_f[block] @ item_f.T + bias
            out[start : start + len(block)] = np.argpartition(-scores, 10, axis=1)[:, :10]
        return out

    floor_seconds, _ = timed(floor, repeat=args.repeat)

    # lightfm.evaluation needs a LightFM object: the bare one, trained the same way
    test_coo = sp.coo_matrix(test)

    def lightfm_eval():
        p = precision_at_k(bare, test_coo, train_interactions=train, k=10, num_threads=args.threads)
        r = recall_at_k(bare, test_coo, train_interactions=train, k=10, num_threads=args.threads)
        a = auc_score(bare, test_coo, train_interactions=train, num_threads=args.threads)
        return float(p.mean()), float(r.mean()), float(a.mean())

    lightfm_seconds, (lf_p, lf_r, lf_auc) = timed(lightfm_eval, repeat=1)

    # same metrics from both, on the bare model, so the comparison is of speed, not of definitions
    _, bare_users = bare.get_user_representations()
    bare_bias, bare_items = bare.get_item_representations()
    check = evaluate(
        lambda u: bare_users[u] @ bare_items.T + bare_bias,  # the user bias does not change a ranking
        seen,
        truth,
        ["precision@10", "recall@10", "auc"],
        n_items=args.items,
    )
    report = {
        "users": args.users,
        "items": args.items,
        "evaluated_users": int(result.users_evaluated),
        "train_interactions": int(train.nnz),
        "test_interactions": int(test.nnz),
        "components": args.components,
        "threads": args.threads,
        "metrics": metrics,
        "seconds": round(ours_seconds, 4),
        "lightfm_seconds": round(lightfm_seconds, 4),
        "floor_seconds": round(floor_seconds, 4),
        "speedup_vs_lightfm": round(lightfm_seconds / ours_seconds, 2),
        "ratio_to_floor": round(ours_seconds / floor_seconds, 2),
        "fit_seconds": round(fit_ours, 3),
        "bare_fit_seconds": round(fit_bare, 3),
        "fit_overhead": round(fit_ours / fit_bare - 1, 4),
        "fit_epochs": args.epochs,
        "agreement_on_bare_model": {
            "precision@10": [check.summary["precision@10"], lf_p],
            "recall@10": [check.summary["recall@10"], lf_r],
            "auc": [check.summary["auc"], lf_auc],
        },
        "ndcg@10": round(result.summary["ndcg@10"], 4),
        "machine": machine(),
        "targets": {"ratio_to_floor": "<= 2", "speedup_vs_lightfm": ">= 5", "fit_overhead": "<= 0.05"},
    }
    write_results(args.out, report)


if __name__ == "__main__":
    main()
