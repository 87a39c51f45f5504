"""Issue 13, data side: inputs never destroyed, folders whole or absent, fair candidates, tolerant readers.

Every input is built here, tiny. The field cases of ../shared/cases/field/ (05-12, 16) each have a test below.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import load_prepared

from outfitrec.cli import main
from outfitrec.data.fitb import FitbQuestions, make_fitb
from outfitrec.data.io import MANIFEST, atomic_file, atomic_folder, check_output_folder, read_manifest
from outfitrec.data.negatives import Candidates, category_pools, hard_negatives, make_candidates, random_mix
from outfitrec.data.oracle import load_truth
from outfitrec.data.outfits import MAX_USER_ID, DataError, OutfitDataset, Outfits
from outfitrec.data.plain import read_plain
from outfitrec.data.polyvore_u import load_polyvore_u
from outfitrec.data.prepare import load_fitb, prepare
from outfitrec.data.stats import dataset_stats, format_stats, training_leaks

# ----------------------------------------------------------------------------- helpers

_OUTFITREC = [sys.executable, "-c", "from outfitrec.cli import main; main()"]


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `outfitrec ARGS` through the real entry point: (exit code, stdout, stderr + warning lines)."""
    monkeypatch.setattr(sys, "argv", ["outfitrec", *map(str, args)])
    code = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err + "".join(f"warning: {w.message}\n" for w in caught)


def _plain(folder: Path, items: dict[str, str], outfits: list[str], images: dict[str, str] | None = None) -> Path:
    """A plain-format folder: items {id: category}, outfits 'oid,user,split,a;b' lines."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "item_id,category,image" if images else "item_id,category"
    rows = [f"{i},{c},{images[i]}" if images else f"{i},{c}" for i, c in items.items()]
    (folder / "items.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    (folder / "outfits.csv").write_text("\n".join(["outfit_id,user,split,item_ids", *outfits]) + "\n")
    return folder


def _grid(folder: Path, per_category: int = 9, users: int = 3, per_split=(6, 3, 3), seed: int = 0) -> Path:
    """A plain dataset of top+bottom+shoes outfits, `per_category` items per category, distinct outfits."""
    rng = np.random.default_rng(seed)
    items = {f"{c}{i}": c for c in ("top", "bottom", "shoes") for i in range(per_category)}
    lines, seen, oid = [], set(), 0
    for u in range(users):
        for split, n in zip(("train", "valid", "test"), per_split):
            while sum(1 for s in seen if s[0] == u and s[1] == split) < n:
                o = tuple(f"{c}{rng.integers(per_category)}" for c in ("top", "bottom", "shoes"))
                if any(s[0] == u and s[2] == o for s in seen):
                    continue
                seen.add((u, split, o))
                lines.append(f"{oid},u{u},{split},{';'.join(o)}")
                oid += 1
    return _plain(folder, items, lines)


def _polyvore(folder: Path, train: str, lists: dict[str, str] | None = None, variable: bool = False) -> Path:
    """A Polyvore-U tuples folder: 4 tops, 3 bottoms, 3 shoes; `train` = data lines of tuples_train_posi."""
    folder.mkdir(parents=True, exist_ok=True)
    default = {"top": "t0\nt1\nt2\nt3\n", "bottom": "b0\nb1\nb2\n", "shoe": "s0\ns1\ns2\n"}
    for cat, text in {**default, **(lists or {})}.items():
        (folder / f"image_list_{cat}").write_bytes(text.encode() if isinstance(text, str) else text)
    header = "user,top,top,bottom,shoe" if variable else "user,top,bottom,shoe"
    (folder / "tuples_train_posi").write_text(f"{header}\n{train}")
    return folder


# ----------------------------------------------------------------------------- kind 1: never destroy input


def test_prepare_refuses_an_output_that_is_contains_or_lies_inside_its_input(tmp_path, monkeypatch, capsys):
    src = _grid(tmp_path / "P" / "src")
    (tmp_path / "P" / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in (tmp_path / "P").rglob("*") if p.is_file()}
    for out, how in ((src, "is"), (tmp_path / "P", "contains"), (src / "prepared", "lies inside")):
        code, _, err = _cli(monkeypatch, capsys, "data", "prepare", src, out, "--format", "plain", "--overwrite")
        assert code == 2 and f"the output {how} the input" in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in (tmp_path / "P").rglob("*") if p.is_file()} == before


def test_overwrite_replaces_only_a_folder_outfitrec_wrote(tmp_path):
    src = _grid(tmp_path / "src")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(DataError, match="not written by outfitrec"):
        prepare(src, foreign, "plain", overwrite=True)
    assert (foreign / "thesis.tex").read_text() == "years of work"
    out = tmp_path / "out"
    prepare(src, out, "plain", seed=0)
    assert read_manifest(out)["kind"] == "prepared" and read_manifest(out)["seed"] == 0
    with pytest.raises(DataError, match="pass --overwrite"):
        prepare(src, out, "plain", seed=1)
    prepare(src, out, "plain", seed=1, overwrite=True)
    assert read_manifest(out)["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "out", "src"]  # nothing left beside


def test_convert_cold_and_make_fmnist_refuse_their_input(tmp_path, monkeypatch, capsys):
    src = _grid(tmp_path / "src")
    code, _, err = _cli(monkeypatch, capsys, "data", "convert", src, src, "--from", "plain", "--overwrite")
    assert code == 2 and "the output is the input" in err
    prepare(src, tmp_path / "prep", "plain")
    code, _, err = _cli(monkeypatch, capsys, "data", "cold", tmp_path / "prep", tmp_path / "prep" / "c", "--n", "1")
    assert code == 2 and "lies inside the input" in err
    fm = tmp_path / "fm"
    fm.mkdir()
    code, _, err = _cli(monkeypatch, capsys, "data", "make-fmnist", fm / "out", "--preset", "tiny", "--fmnist-dir", fm)
    assert code == 2 and "lies inside the input" in err


def test_leftovers_of_interrupted_writes_are_cleaned_and_temp_files_removed_on_failure(tmp_path):
    out = tmp_path / "out"
    (tmp_path / ".out.abc123.tmp").mkdir()
    (tmp_path / ".out.abc123.tmp" / "dataset.npz").write_text("half")
    (tmp_path / ".out.def456.old").mkdir()
    with atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("newer")
        raise RuntimeError("killed")
    assert (out / "a.txt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "f.bin") as tmp:
        tmp.write_bytes(b"x")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(DataError, match="is a file"):
        check_output_folder(out / "a.txt")


# ----------------------------------------------------------------------------- kind 2: whole or absent


def test_derived_files_of_another_dataset_are_refused(tmp_path):
    src = _grid(tmp_path / "src")
    other = _grid(tmp_path / "other", seed=5)
    prepare(src, tmp_path / "a", "plain")
    prepare(other, tmp_path / "b", "plain")
    dataset, _ = load_prepared(tmp_path / "a")
    assert read_manifest(tmp_path / "a")["dataset"]["fingerprint"] == dataset.fingerprint
    for name in ("candidates_test.npz", "fitb_valid.npz"):
        shutil.copyfile(tmp_path / "b" / name, tmp_path / "a" / name)
    with pytest.raises(DataError, match="candidates_test.npz: made from another dataset"):
        load_prepared(tmp_path / "a")
    with pytest.raises(DataError, match="fitb_valid.npz: made from another dataset"):
        load_fitb(tmp_path / "a", "valid")
    shutil.copyfile(tmp_path / "b" / "dataset.npz", tmp_path / "a" / "dataset.npz")
    with pytest.raises(DataError, match="not the dataset its folder's manifest names"):
        load_prepared(tmp_path / "a")


def _check_prepared_whole(out: Path, seeds: set[int]) -> None:
    """The invariant after a kill: absent, or a whole folder of one of `seeds` whose readers agree."""
    if not out.exists():
        return
    info = read_manifest(out)
    assert info is not None and info["seed"] in seeds, sorted(p.name for p in out.iterdir())
    dataset, candidates = load_prepared(out)
    assert dataset.fingerprint == info["dataset"]["fingerprint"]
    assert [candidates[s].meta["seed"] - info["seed"] for s in ("valid", "test")] == [0, 1]
    assert load_fitb(out, "valid").meta["seed"] == info["seed"]


def _check_fmnist_whole(out: Path, seeds: set[int]) -> None:
    if not out.exists():
        return
    info = read_manifest(out)
    assert info is not None and info["seed"] in seeds, sorted(p.name for p in out.iterdir())
    dataset, candidates = load_prepared(out)  # refuses candidates of another dataset
    assert dataset.fingerprint == info["dataset"]["fingerprint"] and set(candidates) == {"valid", "test"}
    load_truth(out)  # refuses a truth of another dataset
    load_fitb(out, "test")
    assert (out / "polyvore_u" / MANIFEST).is_file()


def _kill_at_random_points(cmd: list[str], out: Path, check, seeds: list[int], fractions: list[float]) -> None:
    """Run `cmd` (with the seed appended) once whole to time it, then SIGKILL it at each fraction of that time."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    subprocess.run([*cmd, str(seeds[0])], check=True, capture_output=True, env=env)
    full = time.perf_counter() - start
    check(out, {seeds[0]})
    for i, fraction in enumerate(fractions):
        seed = seeds[(i + 1) % len(seeds)]
        before = read_manifest(out)["seed"] if out.exists() else None
        proc = subprocess.Popen([*cmd, str(seed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check(out, {s for s in (before, seed) if s is not None})
    subprocess.run([*cmd, str(seeds[-1])], check=True, capture_output=True, env=env)
    check(out, {seeds[-1]})
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")) == []


@pytest.mark.slow
@pytest.mark.slow
def test_prepare_overwrite_killed_at_random_points_leaves_old_new_or_nothing(tmp_path):
    src = _grid(tmp_path / "src", per_category=12, users=4)
    out = tmp_path / "prepared"
    cmd = [*_OUTFITREC, "data", "prepare", str(src), str(out)]
    cmd += ["--format", "plain", "--overwrite", "--seed"]
    fractions = list(np.random.default_rng(13).uniform(0.55, 1.1, size=8))
    _kill_at_random_points(cmd, out, _check_prepared_whole, [0, 1], fractions)


@pytest.mark.slow
@pytest.mark.slow
def test_make_fmnist_killed_at_random_points_leaves_old_new_or_nothing(tmp_path):
    out = tmp_path / "fm"
    cmd = [*_OUTFITREC, "data", "make-fmnist", str(out), "--preset", "tiny"]
    cmd += ["--images", "procedural", "--overwrite", "--seed"]
    fractions = list(np.random.default_rng(14).uniform(0.55, 1.1, size=6))
    _kill_at_random_points(cmd, out, _check_fmnist_whole, [0, 1], fractions)


# ----------------------------------------------------------------------------- kind 4: candidates


def test_random_mix_negatives_of_a_positive_are_distinct_when_enough_mixes_exist(tmp_path):
    # field case 08: ~9 items per category per split, K=10: no repeated negative
    dataset = read_plain(_grid(tmp_path / "src", per_category=9, users=3, per_split=(6, 6, 6)))
    forbidden = set().union(*(o.item_sets() for o in dataset.splits.values()))
    for split in ("valid", "test"):
        pos = dataset.splits[split]
        pools = category_pools(pos.items, dataset.catalogue.item_category)
        neg = random_mix(pos, pools, 10, np.random.default_rng(0), forbidden)
        sets = neg.item_sets()
        for i in range(len(pos)):
            group = sets[i * 10 : (i + 1) * 10]
            assert len(set(group)) == 10 and not set(group) & forbidden


def test_random_mix_warns_when_fewer_than_k_distinct_mixes_exist():
    cat = np.array([0, 0, 1, 1])
    pos = Outfits.from_rows([0], [[0, 2]], cat)  # 4 mixes, one of them the positive: 3 distinct negatives
    with pytest.warns(UserWarning, match="7 negatives repeat an earlier negative"):
        neg = random_mix(pos, {0: np.array([0, 1]), 1: np.array([2, 3])}, 10, np.random.default_rng(0))
    assert len(set(neg.item_sets())) == 3


def test_hard_negatives_are_never_the_users_own_positives():
    # field case 07: user 0 has 300 outfits, user 1 one; user 2 shares an outfit with user 0
    cat = np.zeros(400, dtype=np.int64)
    rows = [[i] for i in range(300)] + [[300], [5]]
    pos = Outfits.from_rows([0] * 300 + [1, 2], rows, cat)
    with pytest.warns(UserWarning, match="600 hard negatives repeat an earlier one of the same positive"):
        neg = hard_negatives(pos, 3, np.random.default_rng(0))  # user 0 has one other outfit for K = 3
    neg = neg.subset(np.flatnonzero(np.arange(len(neg)) % 3 < 2))
    own = {u: {s for s, v in zip(pos.item_sets(), pos.users) if v == u} for u in (0, 1, 2)}
    assert all(s not in own[int(u)] for s, u in zip(neg.item_sets(), neg.users))
    assert {s for s, u in zip(neg.item_sets(), neg.users) if u == 0} == {frozenset({300})}
    with pytest.raises(DataError, match="user 0: every other user's outfit is one of her own"):
        hard_negatives(Outfits.from_rows([0, 1], [[1], [1]], cat), 2, np.random.default_rng(0))


def test_the_k_hard_negatives_of_a_positive_are_distinct_when_they_can_be():
    """Fresh-clone review: picks were drawn with replacement, so a positive could get one outfit twice, silently."""
    cat = np.zeros(40, dtype=np.int64)
    pos = Outfits.from_rows(np.arange(40) % 8, [[i] for i in range(40)], cat)  # 8 users, 35 other outfits each
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough outfits: no repeat, no warning
        neg = hard_negatives(pos, 10, np.random.default_rng(0))
    sets = np.asarray([min(s) for s in neg.item_sets()]).reshape(40, 10)
    assert all(len(set(row)) == 10 for row in sets)


def test_hard_negatives_cli_uses_no_own_positive(tmp_path, monkeypatch, capsys):
    lines = [f"{i},a,train,t{i % 5};b{i % 3}" for i in range(4)] + ["4,b,train,t1;b2"]
    lines += [f"{10 + i},a,test,t{i};b{i % 3}" for i in range(5)] + ["20,b,test,t4;b0"]
    items = {**{f"t{i}": "top" for i in range(5)}, **{f"b{i}": "bottom" for i in range(3)}}
    src = _plain(tmp_path / "src", items, lines)
    prepare(src, tmp_path / "p", "plain", k=2)
    code, _, err = _cli(monkeypatch, capsys, "data", "negatives", tmp_path / "p", "--kind", "hard", "--splits", "test")
    assert code == 0, err
    c = Candidates.load(tmp_path / "p" / "candidates_test_hard.npz")
    own = {(int(u), s) for u, s in zip(c.positives.users, c.positives.item_sets())}
    assert not any((int(u), s) in own for u, s in zip(c.negatives.users, c.negatives.item_sets()))


def test_valid_test_positives_that_are_training_outfits_are_counted_and_warned(tmp_path, monkeypatch, capsys):
    # field case 09: 2 of 3 test outfits of user a are her training outfits
    items = {"t0": "top", "t1": "top", "t2": "top", "b0": "bottom", "b1": "bottom", "b2": "bottom"}
    lines = ["0,a,train,t0;b0", "1,a,train,t1;b1", "2,b,train,t2;b2", "3,a,test,t0;b0", "4,a,test,b1;t1"]
    lines += ["5,a,test,t2;b2", "6,b,test,t0;b0"]
    src = _plain(tmp_path / "src", items, lines)
    dataset = read_plain(src)
    assert training_leaks(dataset) == {"test": (2, 4)}
    assert dataset_stats(dataset)["splits"]["test"]["training_outfits_of_same_user"] == 2
    assert "warning: 2 of 4 test outfits are training outfits of the same user" in format_stats(dataset_stats(dataset))
    code, _, err = _cli(monkeypatch, capsys, "data", "prepare", src, tmp_path / "p", "--format", "plain", "--k", "1")
    assert code == 0 and "warning: 2 of 4 test outfits are training outfits of the same user" in err


def test_fitb_question_whose_distractor_is_its_answer_is_dropped():
    q = FitbQuestions(
        users=[0, 1],
        items=[[1, 5], [2, 6]],
        categories=[[0, 1], [0, 1]],
        mask=np.ones((2, 2), dtype=bool),
        outfit_ids=[0, 1],
        blank=[0, 0],
        candidates=[[1, 2, 3, 4], [2, 3, 2, 4]],
    )
    kept, dropped = q.without_answer_repeats()
    assert dropped == 1 and kept.outfit_ids.tolist() == [0] and kept.meta["dropped_answer_repeats"] == 1


def test_small_pool_draws_from_the_catalogue_and_skips_what_cannot_be_negated(tmp_path, monkeypatch, capsys):
    # field case 10: the test pool's only hat is the positive's own; hat1 (catalogue) is a valid negative
    items = {"top0": "top", "top1": "top", "hat0": "hat", "hat1": "hat"}
    lines = ["0,alice,train,top0;hat1", "1,bob,train,top1", "2,alice,test,hat0", "3,bob,test,top0"]
    src = _plain(tmp_path / "src", items, lines)
    code, _, err = _cli(monkeypatch, capsys, "data", "prepare", src, tmp_path / "p", "--format", "plain", "--k", "1")
    assert code == 0, err
    assert "negatives (split test): 1 positives left out (outfit ids 3)" in err
    c = Candidates.load(tmp_path / "p" / "candidates_test.npz")
    assert c.positives.outfit_ids.tolist() == [2] and c.negatives.item_sets() == [frozenset({3})]


def test_fitb_files_are_optional_for_a_catalogue_too_small(tmp_path, monkeypatch, capsys):
    # field case 11: 3 items per category: no FITB question, one warning line, the rest prepared
    items = {f"{c}{i}": c for c in ("top", "bottom") for i in range(3)}
    lines = ["0,u0,train,top0;bottom0", "1,u1,train,top1;bottom1", "2,u0,valid,top2;bottom1"]
    lines += ["3,u1,valid,top0;bottom2", "4,u0,test,top1;bottom2", "5,u1,test,top2;bottom0"]
    src = _plain(tmp_path / "src", items, lines)
    code, _, err = _cli(monkeypatch, capsys, "data", "prepare", src, tmp_path / "p", "--format", "plain", "--k", "2")
    assert code == 0, err
    assert err.count("warning: fitb:") == 1 and "(FITB files are optional)" in err
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "candidates_test.npz",
        "candidates_valid.npz",
        "dataset.npz",
        MANIFEST,
    ]


def test_an_outfit_holding_one_item_twice_is_refused_in_every_format(tmp_path):
    # field case 16 (Polyvore-U variable layout), the plain reader, and any dataset
    folder = _polyvore(tmp_path / "tuples_6", "0,1,-1,0,0\n0,3,3,1,1\n", variable=True)
    with pytest.raises(DataError, match=r"tuples_train_posi:3: top 3 appears twice"):
        load_polyvore_u(folder)
    folder = _polyvore(tmp_path / "tuples_7", "0,-1,1,0,0\n", variable=True)
    with pytest.raises(DataError, match=r"tuples_train_posi:2: negative index -1 in column 2 \(top\)"):
        load_polyvore_u(folder)
    src = _plain(tmp_path / "plain", {"a": "top", "b": "shoes"}, ["0,u,train,a;b;a"])
    with pytest.raises(DataError, match="outfits.csv:2: an item appears twice in one outfit"):
        read_plain(src)
    dataset = read_plain(_plain(tmp_path / "ok", {"a": "top", "b": "shoes"}, ["7,u,train,a;b"]))
    dataset.splits["train"].items[0, 1] = 0
    with pytest.raises(DataError, match="split train outfit 7 holds item 0 twice"):
        OutfitDataset(dataset.catalogue, dataset.n_users, dataset.splits)


# ----------------------------------------------------------------------------- kind 6: tolerant readers


def test_trailing_blank_lines_of_an_image_list_are_ignored_a_middle_blank_is_not(tmp_path):
    # field case 05
    folder = _polyvore(tmp_path / "a", "0,0,0,0\n1,1,1,1\n", lists={"top": "t0\nt1\nt2\nt3\n\n\n"})
    dataset = load_polyvore_u(folder)
    assert (dataset.n_users, dataset.catalogue.n_items, dataset.catalogue.n_categories) == (2, 10, 3)
    folder = _polyvore(tmp_path / "b", "0,0,0,0\n", lists={"top": "t0\n\nt1\n"})
    with pytest.raises(DataError, match="image_list_top:2: empty image name"):
        load_polyvore_u(folder)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    src = _plain(tmp_path / "plain", {"a": "top", "b": "shoes"}, ["0,u,train,a;b"])
    for name in ("items.csv", "outfits.csv"):
        (src / name).write_bytes(b"\xef\xbb\xbf" + (src / name).read_bytes())
    assert read_plain(src).catalogue.item_names.tolist() == ["a", "b"]
    bom = b"\xef\xbb\xbft0\nt1\nt2\nt3\n"
    folder = _polyvore(tmp_path / "pu", "0,0,0,0\n", lists={"top": bom})
    assert load_polyvore_u(folder).catalogue.item_names[0] == "t0"


def test_image_paths_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    # field case 12: prepared with a relative source path, read from another directory
    from PIL import Image

    src = tmp_path / "work" / "src"
    (src / "images").mkdir(parents=True)
    for name in ("chemise été.png", "b.png"):
        Image.new("RGB", (4, 4), (200, 10, 10)).save(src / "images" / name)
    _plain(
        src, {"a": "top", "b": "shoes"}, ["0,u,train,a;b"], images={"a": "images/chemise été.png", "b": "images/b.png"}
    )
    monkeypatch.chdir(tmp_path / "work")
    prepare(Path("src"), Path("prepared"), "plain")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    dataset = OutfitDataset.load(Path("../work/prepared/dataset.npz"))
    assert dataset.catalogue.load_image(0).shape == (4, 4, 3)
    # a folder holding its images stores them relative to itself, so it can be moved
    dataset.catalogue.image_paths = np.asarray([str(tmp_path / "work" / "src" / "images" / "b.png")] * 2)
    shutil.copytree(tmp_path / "work" / "src" / "images", tmp_path / "moved" / "images")
    dataset.catalogue.image_paths = np.asarray([str(tmp_path / "moved" / "images" / "b.png")] * 2)
    dataset.save(tmp_path / "moved" / "dataset.npz")
    shutil.move(tmp_path / "moved", tmp_path / "moved2")
    assert OutfitDataset.load(tmp_path / "moved2" / "dataset.npz").catalogue.load_image(1).shape == (4, 4, 3)


# ----------------------------------------------------------------------------- kind 5: data-reader errors


def test_ids_beyond_int64_name_the_file_and_line(tmp_path, monkeypatch, capsys):
    # field case 06
    folder = _polyvore(tmp_path / "pu" / "tuples_6", "0,0,0,0\n0,99999999999999999999,1,1\n")
    code, _, err = _cli(monkeypatch, capsys, "data", "stats", tmp_path / "pu", "--format", "polyvore-u")
    assert code == 2 and err.count("\n") == 1
    assert err.strip() == (
        f"error: {folder}/tuples_train_posi:3: column 2: 99999999999999999999 is out of range "
        "(index beyond image_list_top, 4 images)"
    )
    src = _plain(tmp_path / "plain", {"a": "top"}, ["99999999999999999999,u,train,a"])
    code, _, err = _cli(monkeypatch, capsys, "data", "stats", src)
    assert (
        code == 2 and err.strip() == f"error: {src}/outfits.csv:2: outfit_id 99999999999999999999 is too large (int64)"
    )


def test_a_user_id_that_would_allocate_too_many_users_is_refused(tmp_path):
    folder = _polyvore(tmp_path / "tuples_6", f"0,0,0,0\n{MAX_USER_ID},1,1,1\n")
    with pytest.raises(DataError, match=f"tuples_train_posi:3: user {MAX_USER_ID} is too large"):
        load_polyvore_u(folder)
    folder = _polyvore(tmp_path / "tuples_7", "0,0,0,0\n99999999999999999999,1,1,1\n")
    with pytest.raises(DataError, match="tuples_train_posi:3: column 1: .* is out of range"):
        load_polyvore_u(folder)


def test_negative_seeds_are_refused(tmp_path, monkeypatch, capsys):
    src = _grid(tmp_path / "src")
    code, _, err = _cli(
        monkeypatch, capsys, "data", "prepare", src, tmp_path / "p", "--format", "plain", "--seed", "-1"
    )
    assert code == 2 and err.strip() == "error: seed: -1 is not a non-negative integer"
    assert not (tmp_path / "p").exists()
    dataset = read_plain(src)
    pos = dataset.splits["test"]
    with pytest.raises(DataError, match="seed"):
        make_candidates(pos, category_pools(pos.items, dataset.catalogue.item_category), seed=-3)
    with pytest.raises(DataError, match="seed"):
        make_fitb(pos, category_pools(pos.items, dataset.catalogue.item_category), seed=-3)


def test_warnings_are_not_errors_in_quiet_runs(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(_grid(tmp_path / "src"), tmp_path / "p", "plain")
    assert json.loads((tmp_path / "p" / MANIFEST).read_text())["dataset"]["outfits"] == {
        "train": 18,
        "valid": 9,
        "test": 9,
    }


def test_atomic_writes_get_the_modes_of_a_plain_write(tmp_path):
    """mkstemp / mkdtemp make 0600 / 0700; outfitrec's outputs get what open() / mkdir() give under the umask."""
    from outfitrec.data.io import atomic_folder, write_text_atomic
    from outfitrec.data.outfits import save_npz_atomic

    mask = os.umask(0o022)
    os.umask(mask)
    write_text_atomic(tmp_path / "a.txt", "x")
    save_npz_atomic(tmp_path / "b.npz", {"x": np.zeros(2)})
    with atomic_folder(tmp_path / "folder") as tmp:
        write_text_atomic(tmp / "inside.json", "{}")
    for path in (tmp_path / "a.txt", tmp_path / "b.npz", tmp_path / "folder" / "inside.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~mask
