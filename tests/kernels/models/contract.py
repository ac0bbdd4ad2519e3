"""The contract every recommender honours. A model's test class subclasses `RecommenderContract`
and provides `make(seed)`; `learns` says whether it must solve the checkerboard."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from persotool.errors import ModelError
from persotool.kernels.models.base import Recommender
from persotool.kernels.models.registry import load

N_USERS, N_ITEMS = 40, 30


def checkerboard(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Even users like even items, odd users odd items: each user has 8 of their 15 same-parity
    items in training, and 3 more held out."""
    rng = np.random.default_rng(seed)
    train_rows, train_cols, test_rows, test_cols = [], [], [], []
    for user in range(N_USERS):
        same = np.arange(user % 2, N_ITEMS, 2)
        picked = rng.permutation(same)
        train_rows += [user] * 8
        train_cols += picked[:8].tolist()
        test_rows += [user] * 3
        test_cols += picked[8:11].tolist()
    train = sp.csr_matrix(
        (np.ones(len(train_rows), dtype=np.float32), (train_rows, train_cols)), shape=(N_USERS, N_ITEMS)
    )
    test = sp.csr_matrix((np.ones(len(test_rows), dtype=np.float32), (test_rows, test_cols)), shape=(N_USERS, N_ITEMS))
    return train, test


class RecommenderContract:
    learns = True

    def make(self, seed: int = 0) -> Recommender:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls) -> Recommender:
        train, _ = checkerboard()
        return cls().make().fit(train)

    def test_shapes_single_and_batch(self, fitted: Recommender) -> None:
        items, scores = fitted.recommend(np.arange(N_USERS), k=5)
        assert items.shape == (N_USERS, 5) and scores.shape == (N_USERS, 5)
        one, _one_scores = fitted.recommend(3, k=5)
        assert one.shape == (5,)
        np.testing.assert_array_equal(one, items[3])
        assert np.all(np.diff(scores, axis=1) <= 1e-6), "best first"
        assert fitted.score(np.array([0, 1])).shape == (2, N_ITEMS)

    def test_seen_items_are_excluded(self, fitted: Recommender) -> None:
        train, _ = checkerboard()
        items, _ = fitted.recommend(np.arange(N_USERS), k=10)
        for user in range(N_USERS):
            assert not set(items[user]) & set(train[user].indices)
        kept, _ = fitted.recommend(np.arange(N_USERS), k=10, exclude_seen=False)
        assert kept.shape == (N_USERS, 10)

    def test_deterministic_under_a_seed(self) -> None:
        train, _ = checkerboard()
        a = self.make(seed=3).fit(train).score(np.arange(N_USERS))
        b = self.make(seed=3).fit(train).score(np.arange(N_USERS))
        np.testing.assert_allclose(a, b, rtol=1e-6)

    def test_save_load_round_trip(self, fitted: Recommender, tmp_path) -> None:
        fitted.save(tmp_path / "m")
        again = load(tmp_path / "m")
        assert type(again) is type(fitted)
        np.testing.assert_allclose(again.score(np.arange(N_USERS)), fitted.score(np.arange(N_USERS)), rtol=1e-6)
        np.testing.assert_array_equal(
            again.recommend(np.arange(N_USERS), 5)[0], fitted.recommend(np.arange(N_USERS), 5)[0]
        )
        meta = json.loads((tmp_path / "m" / "model.json").read_text())
        meta["format_version"] = 999
        (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
        with pytest.raises(ModelError, match="format 999"):
            load(tmp_path / "m")

    def test_load_refuses_tampered_arrays(self, fitted: Recommender, tmp_path) -> None:
        fitted.save(tmp_path / "m")
        npz = tmp_path / "m" / "arrays.npz"
        with np.load(npz, allow_pickle=False) as stored:
            arrays = dict(stored)

        def rewrite(**changed) -> None:
            np.savez(npz, **(arrays | changed))

        poisoned = arrays["popularity_"].copy()
        poisoned[0] = np.nan
        rewrite(popularity_=poisoned)
        with pytest.raises(ModelError, match="popularity_ holds NaN or inf"):
            load(tmp_path / "m")
        rewrite(popularity_=arrays["popularity_"][:-1])
        with pytest.raises(ModelError, match=r"popularity_ is <f4 \[29\] in arrays.npz, but model.json declares"):
            load(tmp_path / "m")
        rewrite(extra=np.zeros(3))
        with pytest.raises(ModelError, match=r"does not hold the arrays model\.json declares"):
            load(tmp_path / "m")
        # A member whose .npy header asks for 400 GB while the file holds a few bytes: refused from
        # the header, before numpy allocates anything.
        meta = json.loads((tmp_path / "m" / "model.json").read_text())
        meta["arrays"]["popularity_"] = {"dtype": "<f4", "shape": [100_000_000_000]}
        (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
        forged = np.lib.format.header_data_from_array_1_0(arrays["popularity_"]) | {"shape": (100_000_000_000,)}
        import io
        import zipfile

        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, forged)
        with zipfile.ZipFile(npz, "w") as archive:
            for name, value in arrays.items():
                body = io.BytesIO()
                np.lib.format.write_array(body, value)
                data = header.getvalue() + b"\0" * 64 if name == "popularity_" else body.getvalue()
                archive.writestr(f"{name}.npy", data)
        with pytest.raises(ModelError, match=r"claims more data than arrays\.npz holds"):
            load(tmp_path / "m")

    def test_unknown_and_cold_users_get_a_ranking(self, fitted: Recommender) -> None:
        train, _ = checkerboard()
        cold = train.tolil()
        cold[0, :] = 0
        model = self.make().fit(cold.tocsr())
        for user in (0, N_USERS + 5):
            items, scores = model.recommend(user, k=5)
            assert len(set(items.tolist())) == 5 and np.all(np.isfinite(scores))

    def test_solves_the_checkerboard(self, fitted: Recommender) -> None:
        if not self.learns:
            pytest.skip("not a personalised model")
        items, _ = fitted.recommend(np.arange(N_USERS), k=5)
        same_parity = (items % 2) == (np.arange(N_USERS)[:, None] % 2)
        assert same_parity.mean() >= 0.9
