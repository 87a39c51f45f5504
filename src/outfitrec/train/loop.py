"""The one training loop: teacher, plain student and distilled student alike.

What differs between roles is configuration only: `model.size` (the backbone),
`loss.kind` (the objective) and `loss.teacher` (a frozen teacher run). Per step:

1. The batch (positives + K negatives, re-drawn each epoch; see batches.py)
   and, with contrastive learning, two augmented views of each of its 1 + K
   outfits. Every distinct item id of all of them goes through the item
   encoder ONCE (`models/scoring.py`), which is what makes end-to-end CNN training
   affordable on a CPU.
2. Scores [B, C] from the student (C = 1 + K, or 1 + teacher_pool, plus loss.own_top of
   the student's own current top outfits for the user, mined at the start of each epoch
   by the search: train/own_top.py).
3. With a teacher: its scores of the same candidates (frozen, eval mode, no
   gradient), and the per-user thresholds r_u computed once before training
   from its scores of each user's training positives.
4. Loss = objective(loss.kind) + lambda * NT-Xent(projection of the views)
   + anchor_weight * the anchors' log-det regulariser.

Each epoch: validation AUC on the fixed candidates, early stopping, best
checkpoint (model/), resume state (last/), TensorBoard scalars, and, with a
teacher, how many sampled negatives it flags as false negatives (with their
precision / recall against the true false negatives when the dataset folder
has a truth.npz). Everything random in an epoch derives from (seed, epoch),
so `train(..., resume=True)` after a kill replays the remaining epochs exactly.
"""

from __future__ import annotations

import inspect
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from outfitrec import losses
from outfitrec.data.augment import CategoryPools, erase_one, replace_one
from outfitrec.data.negatives import candidates_path
from outfitrec.data.oracle import false_negative_flags, load_truth
from outfitrec.data.outfits import DataError, OutfitDataset, Outfits
from outfitrec.data.prepare import load_dataset
from outfitrec.evaluate.baselines import fit_baseline
from outfitrec.evaluate.hybrid import is_hybrid, load_hybrid
from outfitrec.evaluate.protocol import evaluate_model, evaluate_split
from outfitrec.models.checkpoint import load_run
from outfitrec.models.scoring import CachedScorer, outfit_embeddings_of
from outfitrec.models.search import templates_from_dataset
from outfitrec.train.batches import Batch, EpochSampler, torch_seed
from outfitrec.train.config import RunConfig
from outfitrec.train.distributed import DistContext
from outfitrec.train.own_top import own_top_outfits, training_exclusions
from outfitrec.train.run import (
    RunDir,
    flatten_optimizer,
    load_module_tensors,
    module_tensors,
    now_iso,
    restore_rng_states,
    rng_states,
    unflatten_optimizer,
)

DISTILL_KINDS = ("fnd", "kd", "mse", "rd", "fnd+kd")


class ProjectionHead(nn.Module):
    """SimCLR projection of the outfit embedding z for the contrastive term.

    Part of the training wrapper, not of the saved OutfitModel: it is only
    needed to train, and the recommender never uses it (it is saved in last/
    so a resumed run continues with the same head).
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out_dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


BASELINE_TEACHER = "baseline:"  # loss.teacher = "baseline:ease": a collaborative baseline teaches


@dataclass
class Teacher:
    """The frozen teacher, its per-user thresholds r_u [n_users], and how it scores candidates.

    Distillation (FND, KD, MSE, RD) only reads the teacher's scores of each step's sampled candidates,
    so any scorer can teach: a trained outfitrec run (`model` set) or a collaborative baseline fitted on
    the training data (`score_fn`: a numpy ScoreFn, e.g. EASE). Baseline scores are standardised by the
    mean and std of its scores of the training positives (`offset`, `scale`) so that the softmax over
    the candidates sees logits of the size a model's scores have.

    A frozen model's item embeddings never change, so `item_table` ([n_items, d], `encode_all_items`, computed
    once when the teacher is loaded) replaces its item encoder (the large CNN) at every step: the same scores
    (eval mode, no batch statistics) without re-encoding the step's items.
    """

    thresholds: Tensor
    model: nn.Module | None = None
    score_fn: object | None = None
    offset: float = 0.0
    scale: float = 1.0
    item_table: Tensor | None = None

    @torch.no_grad()
    def score(self, users: Tensor, items: Tensor, mask: Tensor) -> Tensor:
        """Scores [N] of outfits items, mask [N, S] for users [N] (no gradient)."""
        if self.model is not None:
            return self.model(users, items, mask, item_table=self.item_table)
        raw = self.score_fn(users.cpu().numpy(), items.cpu().numpy(), mask.cpu().numpy())
        out = (np.asarray(raw, dtype=np.float64) - self.offset) / self.scale
        return torch.as_tensor(out, dtype=torch.float32, device=users.device)


@dataclass
class StepFlags:
    """The teacher's false-negative flags of one step's sampled negatives (a step returns them)."""

    flagged: int
    scored: int
    outfits: Outfits | None = None  # the step's negatives, kept only when the dataset has a ground truth
    values: np.ndarray | None = None  # their flags, in the same order


@dataclass
class EpochStats:
    """Running sums of one epoch's losses and false-negative flags (the epoch adds each step's results)."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    flagged: int = 0
    negatives_scored: int = 0
    flag_outfits: list[Outfits] = field(default_factory=list)
    flag_values: list[np.ndarray] = field(default_factory=list)

    def add(self, terms: dict[str, Tensor], flags: StepFlags | None = None) -> None:
        self.steps += 1
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach())
        if flags is not None:
            self.flagged += flags.flagged
            self.negatives_scored += flags.scored
            if flags.outfits is not None:
                self.flag_outfits.append(flags.outfits)
                self.flag_values.append(flags.values)

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}


@dataclass(frozen=True)
class Progress:
    """Where a run stands: epochs done, the best validation AUC and its epoch, epochs without improvement."""

    epoch: int = 0
    best: float = -np.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped: bool = False

    @property
    def improved(self) -> bool:
        """Whether the last epoch set a new best."""
        return self.epoch > 0 and self.best_epoch == self.epoch


def early_stopping(progress: Progress, auc: float, min_delta: float, patience: int) -> Progress:
    """The progress after one more epoch whose validation AUC is `auc` (pure).

    A new best needs auc > best + min_delta (a NaN never is one); `patience` epochs in a row without one stop
    the run.
    """
    epoch = progress.epoch + 1
    if auc > progress.best + min_delta:
        return Progress(epoch=epoch, best=float(auc), best_epoch=epoch, bad_epochs=0, stopped=False)
    bad = progress.bad_epochs + 1
    return replace(progress, epoch=epoch, bad_epochs=bad, stopped=bad >= patience)


def setup_runtime(config: RunConfig) -> torch.device:
    """Threads and determinism for reproducible runs (resume must replay exactly)."""
    if config.runtime.threads is not None:
        torch.set_num_threads(config.runtime.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device(config.runtime.device)


def build_model(config: RunConfig, dataset: OutfitDataset, device: torch.device) -> nn.Module:
    """A fresh OutfitModel bound to the dataset's catalogue, initialised from the run's seed."""
    from outfitrec.models.checkpoint import data_numbering
    from outfitrec.models.outfit_model import OutfitModel

    torch.manual_seed(config.data.seed)
    cat = dataset.catalogue
    model = OutfitModel(config.model, dataset.n_users, cat.n_items, cat.n_categories)
    model.bind_catalogue(cat)
    train = dataset.split("train")
    model.set_seen_items(train.items[train.mask])  # encoder 'id': unseen items fall back to their category
    extra = getattr(dataset, "history", None)  # the dataset's extra user history [m, 2], if any
    model.fit_collaborative(  # id_init='svd' / user_history; else a no-op
        np.broadcast_to(train.users[:, None], train.items.shape)[train.mask],
        train.items[train.mask],
        None if extra is None else extra[:, 0],
        None if extra is None else extra[:, 1],
        seed=config.data.seed,
    )
    model.data_numbering = data_numbering(dataset)  # saved in model.json: the checkpoint knows its data
    return model.to(device)


def regularizer(model: nn.Module, users: Tensor) -> Tensor:
    """The model's anchor regulariser, restricted to the batch's users when the model supports it."""
    fn = model.regularizer
    if "users" in inspect.signature(fn).parameters:
        return fn(users=users)
    return fn()


@torch.no_grad()
def load_teacher(path: str, dataset: OutfitDataset, train: Outfits, config: RunConfig, device) -> Teacher:
    """The frozen teacher and its r_u from its scores of each user's training positives.

    path: a run directory / model checkpoint directory, "baseline:NAME" (a collaborative baseline of
    `evaluate.baselines.BASELINES`, registry defaults, fitted on this dataset's training data), or a
    hybrid folder (`evaluate.hybrid`: a run and baselines, standardised and summed).
    """
    if path.startswith(BASELINE_TEACHER) or is_hybrid(path):
        if is_hybrid(path):
            fn = load_hybrid(path, dataset)
        else:
            fn = fit_baseline(path[len(BASELINE_TEACHER) :], dataset)
        raw = np.asarray(fn(train.users, train.items, train.mask), dtype=np.float64)
        offset, scale = float(raw.mean()), float(raw.std()) or 1.0
        teacher = Teacher(torch.zeros(0), score_fn=fn, offset=offset, scale=scale)
        pos_scores = torch.as_tensor((raw - offset) / scale, dtype=torch.float32)
    else:
        model = load_run(path, dataset=dataset, device=device, role="teacher").model
        for p in model.parameters():
            p.requires_grad_(False)
        table = model.encode_all_items(batch_size=config.runtime.eval_batch_size)  # every item, once
        teacher = Teacher(torch.zeros(0), model=model, item_table=table)
        b, arrays = config.runtime.eval_batch_size, (train.users, train.items, train.mask)
        batches = (tuple(torch.as_tensor(a[s : s + b], device=device) for a in arrays) for s in range(0, len(train), b))
        pos_scores = torch.cat([teacher.score(*batch) for batch in batches]).float().cpu()  # from the same table
    teacher.thresholds = losses.user_thresholds(
        pos_scores, torch.as_tensor(train.users), dataset.n_users, aggregate=config.loss.threshold
    ).to(device)
    return teacher


def make_views(
    items: Tensor, mask: Tensor, cats: Tensor, kind: str, pools: CategoryPools, gen: torch.Generator
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Two augmented views (items, mask) of each outfit: erase + replace, two erases, two replaces, or copies."""

    def erase() -> tuple[Tensor, Tensor]:
        return erase_one(items, mask, gen)

    def replace() -> tuple[Tensor, Tensor]:
        return replace_one(items, mask, cats, pools, gen)

    if kind == "both":
        return erase(), replace()
    if kind == "erase":
        return erase(), erase()
    if kind == "replace":
        return replace(), replace()
    return (items, mask), (items, mask)


def objective(
    config: RunConfig, scores: Tensor, n_rec: int, teacher_scores: Tensor | None, thresholds: Tensor | None
) -> dict[str, Tensor]:
    """The loss terms of loss.kind on one batch's scores [B, C] (column 0 positive, n_rec = 1 + K).

    L_rec uses the first 1 + K columns; the distillation terms (and FND, which
    replaces L_rec) use every column, i.e. the teacher pool when one is set.
    """
    cfg = config.loss
    rec_scores = scores[:, :n_rec]
    terms: dict[str, Tensor] = {}
    if cfg.kind in ("fnd", "fnd+kd"):
        terms["fnd"] = losses.fnd_loss(scores, teacher_scores, thresholds, cfg.alpha, cfg.variant, cfg.temperature)
    else:
        terms["rec"] = losses.softmax_loss(rec_scores, cfg.temperature)
    if cfg.kind in ("kd", "fnd+kd"):
        terms["kd"] = cfg.kd_weight * losses.kd_loss(scores, teacher_scores, cfg.kd_temperature)
    elif cfg.kind == "mse":
        terms["mse"] = cfg.mse_weight * losses.score_regression_loss(scores, teacher_scores)
    elif cfg.kind == "rd":
        top_n = min(cfg.rd_top_n, scores.shape[1] - 1)
        terms["rd"] = cfg.rd_weight * losses.ranking_distillation_loss(
            scores, teacher_scores, top_n=top_n, temperature=cfg.temperature
        )
    return terms


# ---------------------------------------------------------------------------------------------- set-up


def load_training_data(config: RunConfig) -> tuple[OutfitDataset, Path, Outfits]:
    """The prepared dataset, its folder, and the training outfits (a seeded subset with data.max_train)."""
    dataset, data_dir = load_dataset(config.data.path)
    train = dataset.split("train")
    if config.data.max_train is not None and config.data.max_train < len(train):
        keep = np.random.default_rng(config.data.seed).choice(len(train), config.data.max_train, replace=False)
        train = train.subset(np.sort(keep))
    return dataset, data_dir, train


def build_sampler(config: RunConfig, dataset: OutfitDataset, train: Outfits, teacher: Teacher | None) -> EpochSampler:
    """The epoch's batches: positives + K negatives (+ the teacher pool when a teacher distils)."""
    use_pool = teacher is not None and config.loss.kind in DISTILL_KINDS
    return EpochSampler(
        train,
        dataset.catalogue.item_category,
        k=config.data.negatives,
        batch_size=config.data.batch_size,
        seed=config.data.seed,
        hard_share=config.data.hard_share,
        pool_size=config.loss.teacher_pool if use_pool else None,
        step_pool=config.data.step_pool,
        own_top=config.loss.own_top,  # a distilling kind always has its teacher (config validation)
        own_top_negatives=config.loss.kind == "softmax",  # no distillation term: they are negatives of L_rec
    )


def build_optimizer(config: RunConfig, modules: list[nn.Module | None]) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9) over the parameters of the trained modules."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    o = config.optim
    if o.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=0.9, weight_decay=o.weight_decay)


class Trainer:
    """One run: set-up (__init__), `step`, `train_epoch`, `fit` (epochs, early stopping, checkpoints).

    Distributed training (torchrun) shows in a few lines: every rank builds the same trainer and runs the
    same steps on its shard of each global batch (`ctx.data_parallel`: DDP averages the gradients); rank 0
    alone validates, evaluates and writes the run directory, TensorBoard and the progress lines
    (`ctx.on_main`: the others wait for its result, or its exception).
    """

    def __init__(self, config: RunConfig, run: RunDir, ctx: DistContext | None = None) -> None:
        self.config, self.run = config, run
        self.ctx = ctx or DistContext.single()  # rank and world size (one process: rank 0 of 1)
        self.device = self.ctx.device_for(setup_runtime(config))  # a GPU run: cuda:LOCAL_RANK
        self.dataset, self.data_dir, self.train_split = load_training_data(config)
        self.model = build_model(config, self.dataset, self.device)
        cl = config.contrastive
        self.head = ProjectionHead(self.model.outfit_dim, cl.projection_dim).to(self.device) if cl.enabled else None
        self.teacher = (
            load_teacher(config.loss.teacher, self.dataset, self.train_split, config, self.device)
            if config.loss.teacher
            else None
        )
        self.sampler = build_sampler(config, self.dataset, self.train_split, self.teacher)
        self.aug_pools = CategoryPools.from_dict(self.sampler.pools)
        self.optimizer = build_optimizer(config, [self.model, self.head])
        # this rank's shard of each global batch through `step`, gradients averaged over ranks (+ bf16 autocast)
        self.train_step = self.ctx.data_parallel(self.step, [self.model, self.head])
        self.truth = _load_truth(self.data_dir)
        # what mining the student's own top outfits needs, once: templates and each user's training outfits
        self.own_top_templates, self.own_top_exclude = self._own_top_setup() if self.sampler.own_top else ([], None)
        self.progress = Progress()  # restored on resume
        self.history: list[dict] = []

    def _own_top_setup(self) -> tuple[list[list[int]], list[set[frozenset[int]]]]:
        """(templates, each user's training outfits as item sets) for mining the student's own top outfits."""
        if getattr(self.model, "excludes_self", False):
            raise DataError("loss.own_top: not available with model.id_exclude_self (items are encoded per user)")
        cat = self.dataset.catalogue
        templates = templates_from_dataset(cat.category_names, self.dataset.meta, self.train_split)
        return templates, training_exclusions(self.train_split, self.dataset.n_users)

    def mine_own_top(self, epoch: int) -> np.ndarray | None:
        """Each user's loss.own_top_search best outfits under the current student (None before own_top_start)."""
        lc = self.config.loss
        if self.own_top_exclude is None or epoch < lc.own_top_start:
            return None
        start = time.perf_counter()
        rows = own_top_outfits(
            self.model,
            self.dataset.catalogue.item_category,
            self.sampler.pools,
            self.own_top_templates,
            self.own_top_exclude,
            lc.own_top_search,
            self.train_split.max_size,
        )
        if self.ctx.is_main and self.config.runtime.progress:
            tqdm.write(
                f"epoch {epoch + 1}: mined the student's top {lc.own_top_search} outfits of "
                f"{len(rows)} users in {time.perf_counter() - start:.1f} s"
            )
        return rows

    # ------------------------------------------------------------------ one step

    def step(self, batch: Batch, gen: torch.Generator) -> tuple[dict[str, Tensor], StepFlags | None]:
        """The loss terms of one batch and, with a teacher, its false-negative flags of the sampled negatives."""
        cfg, dev = self.config, self.device
        b, c, s = batch.items.shape
        users = torch.as_tensor(batch.users, device=dev)
        items = torch.as_tensor(batch.items, device=dev).reshape(b * c, s)
        mask = torch.as_tensor(batch.mask, device=dev).reshape(b * c, s)
        groups = [(items, mask)]
        if self.head is not None:
            rec_items = torch.as_tensor(batch.items[:, : batch.n_rec], device=dev).reshape(-1, s)
            rec_mask = torch.as_tensor(batch.mask[:, : batch.n_rec], device=dev).reshape(-1, s)
            rec_cats = torch.as_tensor(batch.categories[:, : batch.n_rec], device=dev).reshape(-1, s)
            view_a, view_b = make_views(
                rec_items, rec_mask, rec_cats, cfg.contrastive.augmentations, self.aug_pools, gen
            )
            groups += [view_a, view_b]
        if getattr(self.model, "excludes_self", False):  # id_table='users': each slot without its own user
            own = self.model.encode_items(items.reshape(-1), users.repeat_interleave(c * s)).reshape(b * c, s, -1)
            z = [self.model.encode_outfits(own, mask.bool())]
            z += outfit_embeddings_of(self.model, groups[1:]) if len(groups) > 1 else []
        else:
            z = outfit_embeddings_of(self.model, groups)
        scores = self.model.score_embeddings(users.repeat_interleave(c), z[0]).reshape(b, c)

        teacher_scores = thresholds = flags = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_scores = self.teacher.score(users.repeat_interleave(c), items, mask).reshape(b, c)
                thresholds = self.teacher.thresholds[users]
                flagged = losses.fnd_flags(teacher_scores, thresholds)
            flags = StepFlags(int(flagged.sum()), int(flagged.numel()))
            if self.truth is not None:
                flags.outfits, flags.values = batch.negatives(), flagged.cpu().numpy().reshape(-1)

        terms = objective(cfg, scores, batch.n_rec, teacher_scores, thresholds)
        if self.head is not None:
            cl = cfg.contrastive
            group = batch.n_rec if cl.scope == "within" else None
            terms["cl"] = cl.weight * losses.nt_xent(self.head(z[1]), self.head(z[2]), cl.temperature, group)
        if cfg.loss.anchor_weight > 0:
            terms["reg"] = cfg.loss.anchor_weight * regularizer(self.model, users)
        return terms, flags

    # ------------------------------------------------------------------ one epoch

    def train_epoch(self, epoch: int, writer) -> dict:
        """One pass over the epoch's batches; its record (losses, flag statistics, seconds) for history.json."""
        cfg = self.config
        seed = torch_seed(cfg.data.seed, epoch)
        torch.manual_seed(seed)  # dropout of this epoch
        gen = torch.Generator().manual_seed(seed ^ 0x5EED)  # augmentations of this epoch
        self.model.train()
        if self.head is not None:
            self.head.train()
        stats = EpochStats()
        start = time.perf_counter()
        own_top = self.mine_own_top(epoch)  # the student's current best outfits (loss.own_top), or None
        self.model.train()
        bar = tqdm(
            self.sampler.epoch(epoch, own_top),
            total=self.sampler.n_batches,
            desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
            disable=None if cfg.runtime.progress and self.ctx.is_main else True,  # rank 0's bar
            leave=False,
        )
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for i, batch in enumerate(bar):
            terms, flags = self.train_step(batch, gen)  # this rank's shard (= self.step in one process)
            loss = sum(terms.values())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            self.optimizer.step()
            terms = {"loss": loss, **terms}
            stats.add(terms, flags)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch + 1}, step {i}: loss is {float(loss.detach())}; lower optim.lr")
            step = epoch * self.sampler.n_batches + i + 1  # global step, 1-based: epoch e ends at (e+1) * n_batches
            if writer is not None and i % cfg.runtime.log_every == 0:
                for k, v in terms.items():
                    writer.add_scalar(f"train_step/{k}", float(v.detach()), step)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        stats = self.ctx.reduce_epoch_stats(stats)  # the global batches' losses and flag counts (sum over ranks)
        record = {"epoch": epoch + 1, "seconds": time.perf_counter() - start, "steps": stats.steps}
        record.update({f"train_{k}": v for k, v in stats.means().items()})
        record.update(self._flag_stats(stats))
        return record

    def _flag_stats(self, stats: EpochStats) -> dict:
        if self.teacher is None:
            return {}
        out = {
            "fn_flagged": stats.flagged,
            "fn_flagged_share": stats.flagged / max(stats.negatives_scored, 1),
        }
        if self.truth is not None and stats.flag_outfits:
            neg = Outfits.concat(stats.flag_outfits)
            flags = np.concatenate(stats.flag_values)
            true = np.asarray(false_negative_flags(self.truth, neg.users, neg.items, neg.mask), dtype=bool)
            hit = int((flags & true).sum())
            out["fn_true"] = int(true.sum())
            out["fn_true_share"] = float(true.mean()) if len(true) else 0.0
            out["fn_precision"] = hit / max(int(flags.sum()), 1)
            out["fn_recall"] = hit / max(int(true.sum()), 1)
        return out

    def validate(self) -> dict:
        scorer = CachedScorer(self.model, None, self.config.runtime.eval_batch_size)
        out = evaluate_split(scorer, self.dataset, self.data_dir, "valid", with_fitb=False)
        self.model.train()
        return out

    # ------------------------------------------------------------------ the run

    def fit(self, resume: bool = False) -> dict:
        """Train the remaining epochs (early stopping, a checkpoint per epoch); the final metrics of the best model."""
        cfg, ctx = self.config, self.ctx
        master = ctx.is_main  # rank 0: the one process that writes files and prints
        if resume:
            saved = ctx.on_main(self.run.load_state)  # rank 0 reads the resume state, every rank gets it
            if saved is not None:
                self.restore(*saved)
        # a killed run may have logged steps past its last checkpoint: purge them (epoch e ends at step e * n)
        writer = _writer(self.run.tb_dir, self.progress.epoch * self.sampler.n_batches + 1) if master else None
        try:
            while self.progress.epoch < cfg.optim.epochs and not self.progress.stopped:
                record = self.train_epoch(self.progress.epoch, writer)
                valid = ctx.on_main(self.validate)  # rank 0 validates, every rank gets the result
                record.update({f"valid_{k}": v for k, v in valid.items() if k != "n_positives"})
                self.progress = early_stopping(self.progress, valid["auc"], cfg.optim.min_delta, cfg.optim.patience)
                record["best_epoch"] = self.progress.best_epoch
                self.history.append(record)
                ctx.on_main(self.checkpoint, valid)  # rank 0 writes; every rank raises its error, if any
                if master:
                    _log_epoch(writer, record, self.progress.epoch * self.sampler.n_batches, cfg.runtime.progress)
        finally:
            if writer is not None:
                writer.close()
        return ctx.on_main(self.finish)  # rank 0 evaluates and writes metrics.json, every rank gets them

    def checkpoint(self, valid: dict) -> None:
        """The epoch's files: the best model (when it improved), the resume state, history.json."""
        if self.progress.improved:
            meta = {"epoch": self.progress.epoch, "valid": valid, "run": self.config.name}
            self.run.save_best(self.model, meta)
        self.run.save_state(*self.state())
        self.run.write_history(self.history)

    def state(self) -> tuple[dict[str, Tensor], dict]:
        """The resume state: tensors (model, head, optimizer, RNG) and JSON metadata (progress, history)."""
        tensors = module_tensors(self.model, "model.")
        if self.head is not None:
            tensors.update(module_tensors(self.head, "head."))
        opt_tensors, opt_meta = flatten_optimizer(self.optimizer)
        rng_tensors, rng_meta = rng_states()
        tensors.update(opt_tensors)
        tensors.update(rng_tensors)
        p = self.progress
        meta = {
            "epoch": p.epoch,
            "best": None if not np.isfinite(p.best) else p.best,
            "best_epoch": p.best_epoch,
            "bad_epochs": p.bad_epochs,
            "stopped": p.stopped,
            "history": self.history,
            "optimizer": opt_meta,
            "rng": rng_meta,
            "saved": now_iso(),
        }
        return tensors, meta

    def restore(self, tensors: dict[str, Tensor], meta: dict) -> None:
        """Continue from a resume state; a resume may raise the epoch budget or the patience: re-decide stopping."""
        load_module_tensors(self.model, tensors, "model.")
        if self.head is not None:
            load_module_tensors(self.head, tensors, "head.")
        self.optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
        restore_rng_states(tensors, meta["rng"])
        bad_epochs = int(meta["bad_epochs"])
        self.progress = Progress(
            epoch=int(meta["epoch"]),
            best=-np.inf if meta["best"] is None else float(meta["best"]),
            best_epoch=int(meta["best_epoch"]),
            bad_epochs=bad_epochs,
            stopped=bad_epochs >= self.config.optim.patience,
        )
        self.history = list(meta["history"])

    def finish(self) -> dict:
        """The final metrics (metrics.json) and the run's end in run.json."""
        metrics = self.final_metrics()
        self.run.write_metrics(metrics)
        p = self.progress
        self.run.update_run_info(finished=now_iso(), epochs=p.epoch, best_epoch=p.best_epoch)
        return metrics

    def final_metrics(self) -> dict:
        """Valid + test metrics of the best checkpoint (reloaded from model/), popularity baseline beside."""
        if not (self.run.model_dir / "model.json").is_file():
            raise DataError(f"{self.run.model_dir}: no best checkpoint was saved (validation AUC never finite?)")
        model = load_run(self.run.model_dir, dataset=self.dataset, device=self.device).model
        out: dict = {"best_epoch": self.progress.best_epoch, "epochs": self.progress.epoch, "name": self.config.name}
        popularity = {}
        for split in ("valid", "test"):
            if not candidates_path(self.data_dir, split).is_file():
                continue  # e.g. DiFashion: a validation split only
            m = evaluate_model(model, self.dataset, self.data_dir, split, self.config.runtime.eval_batch_size)
            if "popularity" in m:
                popularity[split] = m.pop("popularity")
            out[split] = m
        if popularity:
            out["popularity"] = popularity
        counts = getattr(model, "parameter_counts", None)
        if counts is not None:
            out["parameters"] = counts()
        return out


def _log_epoch(writer, record: dict, step: int, progress: bool) -> None:
    """The epoch's record as TensorBoard scalars and, with runtime.progress, one printed line."""
    for k, v in record.items():
        if isinstance(v, (int, float)) and k != "epoch":
            writer.add_scalar(f"epoch/{k}", v, step)
    writer.flush()
    if progress:
        tqdm.write(_epoch_line(record))


def _epoch_line(record: dict) -> str:
    keys = ("train_loss", "valid_auc", "valid_ndcg", "fn_flagged_share", "fn_precision", "fn_recall", "seconds")
    parts = [f"epoch {record['epoch']}"] + [f"{k}={record[k]:.4f}" for k in keys if k in record]
    return "  ".join(parts)


def _writer(tb_dir: Path, purge_step: int):
    """TensorBoard writer into run_dir/tb (events after `purge_step` from a killed run are purged)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(tb_dir), purge_step=purge_step if purge_step > 1 else None)


def _load_truth(data_dir: Path):
    """The Fashion-MNIST ground truth of the dataset folder, or None (no truth.npz)."""
    if not (data_dir / "truth.npz").is_file():
        return None
    return load_truth(data_dir / "truth.npz")


def train(config: RunConfig, run_dir: str | Path, resume: bool = False) -> dict:
    """Train one run (any role) into `run_dir`; returns the final metrics (also in metrics.json).

    resume=True continues from run_dir/last/ (the saved config.yaml is used;
    `config` may be None, or must equal it), or starts fresh when the run
    never got that far. The run directory gets config.yaml, model/ (the best
    checkpoint, by validation AUC), last/, metrics.json, history.json and tb/.
    Raises DataError / ConfigError for bad data or settings, FloatingPointError
    when the loss stops being finite. Under torchrun every rank calls it; rank 0
    alone writes the run directory.
    """
    ctx = DistContext.from_env()  # rank / world size from torchrun's environment (else rank 0 of 1)
    created = not Path(run_dir).exists()
    run, config = ctx.on_main(RunDir.open, run_dir, config, resume)  # rank 0 creates or reopens the run directory
    try:
        return Trainer(config, run, ctx).fit(resume=resume)
    except (DataError, ValueError, FloatingPointError):
        # refused before its first checkpoint (a teacher of other data, a bad setting, a non-finite loss): a
        # folder this call created is removed, so nothing half-made is left for later runs to find
        if created and ctx.is_main and not run.trained_anything():
            shutil.rmtree(run.path, ignore_errors=True)
        raise
