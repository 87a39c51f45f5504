"""Fashion-MNIST outfit generator: IDX parsing, attributes, structure, determinism, the prepared folder, the CLI.

Runs on the procedural stand-in images everywhere, and on the real
Fashion-MNIST images where the package is installed.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from outfitrec.data.fmnist import (
    ATTRIBUTES,
    CLASS_NAMES,
    CLASS_SLOT,
    SLOTS,
    TEMPLATES,
    Z_CLIP,
    fashion_mnist_available,
    generate,
    item_attributes,
    load_fashion_mnist,
    preset_config,
    random_outfits,
    raw_utility,
    read_idx,
    template_of,
    write_fmnist,
)
from outfitrec.data.negatives import Candidates
from outfitrec.data.outfits import DataError, OutfitDataset

HAVE_FMNIST = fashion_mnist_available()
SOURCES = ["procedural"] + (["fmnist"] if HAVE_FMNIST else [])


def _write_idx(path: Path, array: np.ndarray, magic: bytes | None = None) -> None:
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def tiny() -> dict:
    """The tiny preset on each available image source."""
    return {src: generate("tiny", seed=0, images=src) for src in SOURCES}


def test_read_idx_roundtrip_and_errors(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "ok.gz", data)
    assert np.array_equal(read_idx(tmp_path / "ok.gz"), data)
    _write_idx(tmp_path / "float.gz", data, magic=bytes([0, 0, 0x0D, 3]))
    with pytest.raises(DataError, match="float.gz.*not an unsigned-byte IDX"):
        read_idx(tmp_path / "float.gz")
    with gzip.open(tmp_path / "short.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="short.gz.*needs 10 data bytes, the file has 3"):
        read_idx(tmp_path / "short.gz")


def test_missing_fashion_mnist_names_the_install_command(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        generate("tiny", images="fmnist", fmnist_dir=tmp_path)


def test_item_attributes_of_known_images():
    flat = np.zeros((28, 28), np.uint8)
    flat[4:24, 9:19] = 255  # 20 rows x 10 columns, uniform
    striped = flat.copy()
    striped[4:24:2, 9:19] = 128  # same silhouette, horizontal stripes
    low = np.zeros((28, 28), np.uint8)
    low[14:24, 9:19] = 255
    attrs = item_attributes(np.stack([flat, striped, low, np.zeros((28, 28), np.uint8)]))
    a = dict(zip(ATTRIBUTES, attrs[0]))
    assert a["brightness"] == pytest.approx(1.0)
    assert a["coverage"] == pytest.approx(200 / 784)
    assert a["width"] == pytest.approx(10 / 28)
    assert a["mass_y"] == pytest.approx(14 / 28)
    assert a["contrast"] == pytest.approx(0.0)
    assert a["texture"] == pytest.approx(0.0)
    s = dict(zip(ATTRIBUTES, attrs[1]))
    assert s["brightness"] < a["brightness"] and s["contrast"] > 0.2 and s["texture"] > 0.5
    assert attrs[2, ATTRIBUTES.index("mass_y")] > a["mass_y"]  # lower garment, lower centre of mass
    assert np.all(attrs[3] == 0)


@pytest.mark.parametrize("source", SOURCES)
def test_tiny_structure(tiny, source):
    data = tiny[source]
    ds, truth = data.dataset, data.truth
    cat = ds.catalogue
    assert cat.category_names == SLOTS
    assert ds.meta["templates"] == TEMPLATES and ds.meta["images_source"] == source
    assert cat.images.dtype == np.uint8 and cat.images.shape == (cat.n_items, 28, 28)
    assert np.array_equal(cat.item_category, CLASS_SLOT[truth.item_class])
    assert all(name.startswith(CLASS_NAMES[c] + "_") for name, c in zip(cat.item_names, truth.item_class))
    cfg = preset_config("tiny")
    assert np.array_equal(
        np.bincount(truth.item_class), [cfg.items_per_class * (2 if c == 1 else 1) for c in range(10)]
    )
    sizes = set()
    for name, split in ds.splits.items():
        slots = np.where(split.mask, split.categories, -1)
        assert (template_of(slots) >= 0).all(), name  # every outfit is one of the templates
        assert (split.mask[:, :-1] | ~split.mask[:, 1:]).all()  # real items first, padding after
        sizes |= set(split.sizes.tolist())
        assert len(np.unique(split.users)) == ds.n_users  # every user has outfits in every split
    assert sizes <= {2, 3, 4} and len(sizes) >= 2
    # unseen items: never in training, and some do appear in valid / test
    train_items = np.unique(ds.splits["train"].items[ds.splits["train"].mask])
    assert not truth.item_unseen[train_items].any()
    held = np.concatenate([ds.splits[s].items[ds.splits[s].mask] for s in ("valid", "test")])
    assert truth.item_unseen[held].any()
    assert truth.item_unseen.mean() == pytest.approx(cfg.unseen_share, abs=0.05)
    # no user has one outfit twice
    keys = {(int(u), frozenset(r[m].tolist())) for s in ds.splits.values() for u, r, m in zip(s.users, s.items, s.mask)}
    assert len(keys) == sum(len(s) for s in ds.splits.values())
    # standardised attributes, clipped
    assert np.abs(truth.attributes).max() <= Z_CLIP


@pytest.mark.parametrize("source", SOURCES)
def test_positives_follow_the_utility(tiny, source):
    """Sampled positives have far higher true utility than random outfits of the same user (std 1 over random)."""
    data = tiny[source]
    truth, cfg = data.truth, data.config
    train = data.dataset.splits["train"]
    util = raw_utility(truth, train.users, train.items, train.mask)
    pools = [np.flatnonzero(truth.item_slot == s) for s in range(len(SLOTS))]
    users = np.repeat(np.arange(data.dataset.n_users), 200)
    items, mask = random_outfits(len(users), pools, np.asarray(cfg.template_proposal), np.random.default_rng(0))
    random_util = raw_utility(truth, users, items, mask)
    assert abs(random_util.std() - 1.0) < 0.3  # each user's utility is scaled to std 1 over random outfits
    assert util.mean() > random_util.mean() + 1.5
    # the stored typical utility is the median of the user's training positives
    u0 = train.users[0]
    assert truth.typical[u0] == pytest.approx(np.median(util[train.users == u0]))


def test_generation_is_deterministic_by_seed(tmp_path):
    a = generate("tiny", seed=3, images="procedural")
    b = generate("tiny", seed=3, images="procedural")
    c = generate("tiny", seed=4, images="procedural")
    for name in a.dataset.splits:
        assert a.dataset.splits[name].equals(b.dataset.splits[name])
    assert not a.dataset.splits["train"].equals(c.dataset.splits["train"])
    assert np.array_equal(a.dataset.catalogue.images, b.dataset.catalogue.images)
    for key in a.truth.ARRAYS:
        assert np.array_equal(getattr(a.truth, key), getattr(b.truth, key), equal_nan=True), key
    # byte-identical files
    write_fmnist(a, tmp_path / "a", polyvore_u=False)
    write_fmnist(b, tmp_path / "b", polyvore_u=False)
    files = ("dataset.npz", "truth.npz", "candidates_valid.npz", "candidates_test.npz", "fitb_test.npz")
    for f in files + ("contact_sheet.png",):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


@pytest.mark.skipif(not HAVE_FMNIST, reason="dataset-fashion-mnist not installed")
def test_real_images_are_the_named_fashion_mnist_images(tiny):
    images, labels, names = load_fashion_mnist()
    assert images.shape == (70_000, 28, 28) and np.bincount(labels).tolist() == [7000] * 10
    cat, truth = tiny["fmnist"].dataset.catalogue, tiny["fmnist"].truth
    index = {n: i for i, n in enumerate(names)}
    for item in range(0, cat.n_items, 7):
        source = str(cat.item_names[item]).split("_", 1)[1]
        assert np.array_equal(cat.images[item], images[index[source]])
        assert labels[index[source]] == truth.item_class[item]


def test_prepared_folder(tmp_path, tiny):
    data = tiny["procedural"]
    out = tmp_path / "fm"
    summary = write_fmnist(data, out, k=10, seed=0)
    loaded = OutfitDataset.load(out / "dataset.npz")
    assert loaded.meta["templates"] == TEMPLATES
    assert np.array_equal(loaded.catalogue.images, data.dataset.catalogue.images)
    for split in ("valid", "test"):
        cands = Candidates.load(out / f"candidates_{split}.npz", loaded.n_users, loaded.catalogue.n_items)
        assert cands.k == 10 and cands.positives.equals(loaded.splits[split])
    from outfitrec.data.fitb import FitbQuestions

    assert FitbQuestions.load(out / "fitb_valid.npz", loaded.n_users, loaded.catalogue.n_items).n_candidates == 4
    with Image.open(out / "contact_sheet.png") as im:
        assert im.size[0] > 200 and im.size[1] > 200
    # Polyvore-U layout: the top+bottom+shoes outfits, readable by the loader, PNG images
    from outfitrec.data.polyvore_u import load_polyvore_u

    pu = load_polyvore_u(out / "polyvore_u")
    n_tbs = int((template_of(np.where(loaded.splits["train"].mask, loaded.splits["train"].categories, -1)) == 0).sum())
    assert len(pu.splits["train"]) == n_tbs == summary["polyvore_u"]["written"]["train"]
    pngs = list((out / "polyvore_u" / "images").glob("*.png"))
    assert len(pngs) == int(np.isin(loaded.catalogue.item_category, [0, 1, 2]).sum())
    with pytest.raises(DataError, match="already holds a dataset"):
        write_fmnist(data, out)


def test_cli_make_fmnist_and_oracle(tmp_path):
    from outfitrec.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        app, ["data", "make-fmnist", str(out), "--preset", "tiny", "--seed", "1", "--images", "procedural"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])  # warnings (stderr) aside
    assert summary["n_users"] == preset_config("tiny").n_users and summary["images_source"] == "procedural"
    assert (out / "truth.npz").exists() and (out / "polyvore_u" / "tuples_train_posi").exists()
    flags = tmp_path / "flags.npz"
    result = runner.invoke(app, ["data", "oracle", str(out), "--flags", str(flags), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["oracle"]["auc"] > report["popularity"]["auc"]
    with np.load(flags) as z:
        assert z["neg.false_negative"].shape == (report["n_positives"] * report["k"],)


def test_second_draw_is_another_seed_and_another_unseen_share(tmp_path):
    """Draw 2 of the main comparison: generator seed 1 and 40 % unseen items; draw 1 is the preset itself."""
    from outfitrec.cli import app
    from outfitrec.data.fmnist import DRAWS, draw_settings

    assert draw_settings(1) == (0, None)  # the preset as `make demo` writes it (unseen share 0.3)
    assert draw_settings(2) == (1, 0.4)
    assert preset_config("default").unseen_share == 0.3 and set(DRAWS) == {1, 2}
    with pytest.raises(DataError, match="unknown draw 3"):
        draw_settings(3)
    runner = CliRunner()
    out = tmp_path / "draw2"
    args = ["data", "make-fmnist", str(out), "--preset", "tiny", "--images", "procedural", "--no-polyvore-u"]
    result = runner.invoke(app, [*args, "--draw", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert abs(summary["n_unseen_items"] / summary["n_items"] - 0.4) < 0.02
    # the same as spelling the settings out (seed 1, unseen share 0.4)
    same = generate("tiny", seed=1, images="procedural", config=preset_config("tiny", unseen_share=0.4))
    loaded = OutfitDataset.load(out / "dataset.npz")
    np.testing.assert_array_equal(loaded.splits["train"].items, same.dataset.splits["train"].items)
    result = runner.invoke(app, [*args, "--draw", "2", "--seed", "3", "--overwrite"])  # main() makes it exit 2
    assert isinstance(result.exception, DataError) and "--draw sets the seed" in str(result.exception)
