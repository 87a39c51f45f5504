"""The paper's experiments (method.md §6) as lists of variants over the shared training loop.

Each function returns the variants of one experiment for a scale; the
distillation settings (FND alpha, teacher pool) come from `scales.DISTILL`.
Every student variant of an experiment is paired with a baseline variant
trained with the same seed (same initialisation, same negatives).
"""

from __future__ import annotations

from outfitrec.experiments.report import Claim
from outfitrec.experiments.runner import HYBRID_TEACHER, Variant
from outfitrec.experiments.scales import DISTILL
from outfitrec.models.outfit_model import SERVING_PRESETS

CL = {"contrastive": {"enabled": True, "weight": 0.1, "temperature": 0.2, "augmentations": "both", "scope": "within"}}


def _fnd(alpha: float, variant: str = "soft", threshold: str = "mean") -> dict:
    return {"loss": {"kind": "fnd", "alpha": alpha, "variant": variant, "threshold": threshold}}


def _merge(*parts: dict) -> dict:
    from outfitrec.experiments.runner import deep_merge

    out: dict = {}
    for p in parts:
        out = deep_merge(out, p)
    return out


# the converged teacher of the main comparison: early stopping on validation AUC with patience 3 decides
# when it ends, not the scale's epoch budget (issue 15: the fixed-budget teacher still improved at its last epoch)
CONVERGED = {"optim": {"epochs": 30, "patience": 3}}
# distillation where the student is used (loss.own_top, train/own_top.py): of the student's own top outfits
OWN_TOP = 5


# the whole-model student of `make demo` (configs/fmnist_student_whole_distilled.yaml) in the main comparison:
# plain, CL only, FND + CL and FND + CL from the fair teacher (full scale: the "-long" schedule it ships with)
MAIN_WHOLE_MODEL = tuple(f"whole-dot-long{x}" for x in ("", "+cl", "+fnd+cl", "+fnd+cl@teacher+cl"))


def main_variants(scale: str) -> list[Variant]:
    """Teacher seeds, fair teachers, student, KD baselines, FND, CL, their combinations, the teacher-pool variant.

    One teacher per seed (`per_seed`): each distilling student of seed s learns from the teacher of seed s
    (`Variant.teacher`), so the error bars hold the spread of both. Beside the paper's teacher, two fair
    teachers: "teacher+cl" (the same contrastive term as the best student, CL) and "teacher-es" (run until
    validation AUC stops improving: CONVERGED). "fnd+cl@teacher+cl" and "fnd+cl@teacher-es" distil the best
    student's recipe from each of them; "fnd+cl@t0" is "fnd+cl" with every seed taught by the seed-0 teacher
    (the spread over student seeds alone: the variance split of the table's spread). "kd+top" and
    "kd+cl+top" add the student's own current top outfits to the candidates the teacher scores (issue 15).
    """
    alpha, pool = DISTILL[scale]["alpha"], DISTILL[scale]["pool"]
    fnd = _fnd(alpha)
    teacher = Variant("teacher", role="teacher", baseline="student", per_seed=True, note="one teacher per seed")
    teacher_cl = Variant(
        "teacher+cl", CL, role="teacher", baseline="teacher", per_seed=True, note="teacher + the students' CL"
    )
    teacher_es = Variant(
        "teacher-es",
        CONVERGED,
        role="teacher",
        baseline="teacher",
        per_seed=True,
        extends=teacher,  # the same run continued: its first epochs are the teacher's
        note=f"teacher until valid AUC stops improving (patience {CONVERGED['optim']['patience']}, "
        f"at most {CONVERGED['optim']['epochs']} epochs)",
    )

    def taught(name: str, overrides: dict, note: str, by: Variant = teacher, baseline: str = "student") -> Variant:
        return Variant(name, overrides, uses_teacher=True, teacher=by, baseline=baseline, note=note)

    fnd_cl = _merge(fnd, CL)
    top = {"loss": {"own_top": OWN_TOP}}
    return [
        teacher,
        teacher_cl,
        teacher_es,
        Variant("student", baseline=None, note="plain student, L_rec"),
        taught("kd", {"loss": {"kind": "kd"}}, "+ KL over the 1+K candidates"),
        taught("mse", {"loss": {"kind": "mse"}}, "+ score regression"),
        taught("rd", {"loss": {"kind": "rd"}}, "+ ranking distillation"),
        taught("fnd", fnd, f"FND soft alpha={alpha}"),
        taught("fnd+kd", _merge(fnd, {"loss": {"kind": "fnd+kd"}}), "FND + KL"),
        Variant("cl", CL, note="+ contrastive (erase/replace, within 1+K)"),
        taught("fnd+cl", fnd_cl, "FND + contrastive"),
        taught("fnd+kd+cl", _merge(fnd, {"loss": {"kind": "fnd+kd"}}, CL), "all combined"),
        taught(
            f"kd-pool{pool}",
            {"loss": {"kind": "kd", "teacher_pool": pool}},
            f"beyond the paper: KD over 1+{pool} teacher-scored candidates",
        ),
        taught(
            "kd+top",
            _merge({"loss": {"kind": "kd"}}, top),
            f"beyond the paper: KD also over {OWN_TOP} of the student's own top outfits",
            baseline="kd",
        ),
        taught("kd+cl", _merge({"loss": {"kind": "kd"}}, CL), "KD + contrastive"),
        taught(
            "kd+cl+top",
            _merge({"loss": {"kind": "kd"}}, CL, top),
            f"beyond the paper: KD + CL, KD also over {OWN_TOP} of the student's own top outfits",
            baseline="kd+cl",
        ),
        taught("fnd+cl@teacher+cl", fnd_cl, "FND + CL from teacher+cl", by=teacher_cl, baseline="fnd+cl"),
        taught("fnd+cl@teacher-es", fnd_cl, "FND + CL from teacher-es", by=teacher_es, baseline="fnd+cl"),
        Variant(
            "fnd+cl@t0",
            fnd_cl,
            uses_teacher=True,
            baseline="fnd+cl",
            spread_of="fnd+cl",
            note="fnd+cl, every seed taught by the seed-0 teacher (student seeds' spread alone)",
        ),
        # the shipped distilled student (`make demo`): the compress experiment's whole-model student, the same runs
        *(v for v in compress_variants(scale) if v.name in MAIN_WHOLE_MODEL),
    ]


def alpha_variants(scale: str) -> list[Variant]:
    """FND alpha of both signs, soft and hard offsets (alpha = 0 is the plain student, exactly L_rec).

    The main table's alpha is the run named "fnd" (shared with the main table and the threshold sweep).
    """
    main_alpha = DISTILL[scale]["alpha"]
    out = [Variant("student", baseline=None, group="soft", x=0.0, note="alpha = 0 (identical to L_rec)")]
    for a in (-2.0, -1.0, main_alpha, 0.5, 1.0):
        name = "fnd" if a == main_alpha else f"fnd-soft{a:+g}"
        out.append(Variant(name, _fnd(a, "soft"), uses_teacher=True, group="soft", x=a))
    for a in (-1.0, 1.0):
        out.append(Variant(f"fnd-hard{a:+g}", _fnd(a, "hard"), uses_teacher=True, group="hard", x=a))
    return out


def threshold_variants(scale: str) -> list[Variant]:
    """The aggregate of the teacher's scores of a user's positives giving r_u, at the main table's alpha."""
    alpha = DISTILL[scale]["alpha"]
    out = [Variant("student", baseline=None)]
    for agg in ("mean", "min", "q0.25", "median", "q0.75"):
        name = "fnd" if agg == "mean" else f"fnd-{agg}"
        out.append(Variant(name, _fnd(alpha, threshold=agg), uses_teacher=True, group="threshold", x=agg))
    return out


def augment_variants(scale: str) -> list[Variant]:
    """Contrastive learning with each augmentation choice (none = two copies, only dropout differs)."""
    out = [Variant("student", baseline=None)]
    for aug in ("none", "erase", "replace", "both"):
        cl = _merge(CL, {"contrastive": {"augmentations": aug}})
        out.append(Variant("cl" if aug == "both" else f"cl-{aug}", cl, group="augment", x=aug))
    return out


def backbone_variants(scale: str, kind: str = "images") -> list[Variant]:
    """Backbone size (student / teacher presets) and embedding size, plain and distilled.

    On id data (kind "ids") also the "tiny" preset: 6-wide id embeddings, under
    1/20 of the teacher's backbone where the 8-wide student is 1/16 of it.
    """
    fnd_kd = _merge(_fnd(DISTILL[scale]["alpha"]), {"loss": {"kind": "fnd+kd"}})
    tiny = {"model": {"size": "tiny"}}
    extra = []
    if kind == "ids":
        extra = [
            Variant("student-tiny", tiny, group="size", x="tiny"),
            Variant(
                "fnd+kd-tiny",
                _merge(fnd_kd, tiny),
                uses_teacher=True,
                baseline="student-tiny",
                group="size",
                x="tiny+fnd+kd",
            ),
            Variant(
                "mse-tiny",
                _merge(tiny, {"loss": {"kind": "mse"}}),
                uses_teacher=True,
                baseline="student-tiny",
                group="size",
                x="tiny+mse",
            ),
        ]
    return [
        Variant("student", baseline=None, group="size", x="student"),
        *extra,
        Variant("teacher-size", {"model": {"size": "teacher"}}, group="size", x="teacher"),
        Variant("student-d32", {"model": {"dim": 32}}, group="dim", x=32),
        Variant("student-d128", {"model": {"dim": 128}}, group="dim", x=128),
        Variant("fnd+kd", fnd_kd, uses_teacher=True, group="size", x="student+fnd+kd"),
        Variant(
            "teacher-size+fnd+kd",
            _merge(fnd_kd, {"model": {"size": "teacher"}}),
            uses_teacher=True,
            baseline="teacher-size",
            group="size",
            x="teacher+fnd+kd",
        ),
    ]


def batch_variants(scale: str) -> list[Variant]:
    """Batch size, plain and FND + KD (each paired with the plain student of its batch size)."""
    fnd_kd = _merge(_fnd(DISTILL[scale]["alpha"]), {"loss": {"kind": "fnd+kd"}})
    out = []
    for b in (32, 64, 128):
        plain = "student" if b == 64 else f"student-b{b}"
        batch = {} if b == 64 else {"data": {"batch_size": b}}
        out.append(Variant(plain, batch, baseline=None if b == 64 else "student", group="plain", x=b))
        out.append(
            Variant(
                "fnd+kd" if b == 64 else f"fnd+kd-b{b}",
                _merge(fnd_kd, batch),
                uses_teacher=True,
                baseline=plain,
                group="fnd+kd",
                x=b,
            )
        )
    return out


def hard_variants(scale: str) -> list[Variant]:
    """Half random, half hard negatives (other users' positives), plain and distilled."""
    hard = {"data": {"hard_share": 0.5}}
    alpha = DISTILL[scale]["alpha"]
    return [
        Variant("student", baseline=None, group="random", x="student"),
        Variant("student-hard", hard, baseline="student", group="hard", x="student"),
        Variant(
            "kd-hard",
            _merge(hard, {"loss": {"kind": "kd"}}),
            uses_teacher=True,
            baseline="student-hard",
            group="hard",
            x="kd",
        ),
        Variant(
            "fnd-hard", _merge(hard, _fnd(alpha)), uses_teacher=True, baseline="student-hard", group="hard", x="fnd"
        ),
        Variant(
            "fnd+kd-hard",
            _merge(hard, _fnd(alpha), {"loss": {"kind": "fnd+kd"}}),
            uses_teacher=True,
            baseline="student-hard",
            group="hard",
            x="fnd+kd",
        ),
    ]


def teachers_variants(scale: str, kind: str = "images") -> list[Variant]:
    """Which teacher to distil from: the trained teacher run, a collaborative baseline, or their hybrid.

    FND and KD only read the teacher's scores of each step's sampled candidates, so any scorer can teach
    (`loss.teacher: baseline:NAME`, or a hybrid folder: the teacher run mixed with EASE and PureSVD, the
    weights chosen on validation, `Lab.hybrid_dir`). On id data (kind "ids") the students are the `tiny`
    preset (under 1/20 of the teacher's backbone). The "+cf" rows mix a student's run of each seed with
    the same baselines as the hybrid teacher (what serving the small student beside EASE would give).
    """
    alpha = DISTILL[scale]["alpha"]
    small = {"model": {"size": "tiny"}} if kind == "ids" else {}
    fnd = _merge(small, _fnd(alpha))
    fnd_kd = _merge(fnd, {"loss": {"kind": "fnd+kd"}})
    kd = _merge(small, {"loss": {"kind": "kd"}})
    plain = Variant("student", small, baseline=None, note="plain student, L_rec")
    distilled = Variant("fnd+kd", fnd_kd, uses_teacher=True, note="FND + KL from the trained teacher")
    hybrid = HYBRID_TEACHER
    return [
        Variant("teacher", role="teacher", baseline="student", note="shared teacher, one run (seed 0)"),
        Variant("hybrid", role="hybrid", baseline="student", note="teacher + EASE + PureSVD, mixed on validation"),
        plain,
        Variant("kd", kd, uses_teacher=True, note="KL from the trained teacher"),
        Variant("fnd", fnd, uses_teacher=True, note="FND from the trained teacher"),
        distilled,
        Variant("cl", _merge(small, CL), note="plain student + contrastive"),
        Variant("student+cf", role="hybrid", mix_of=plain, baseline=None, note="the plain student + EASE + PureSVD"),
        Variant("fnd+kd+cf", role="hybrid", mix_of=distilled, baseline="student+cf", note="the FND + KL student + CF"),
        Variant("kd-hybrid", kd, uses_teacher=True, teacher=hybrid, note="KL from the hybrid"),
        Variant("fnd-hybrid", fnd, uses_teacher=True, teacher=hybrid, note="FND from the hybrid"),
        Variant("fnd+kd-hybrid", fnd_kd, uses_teacher=True, teacher=hybrid, note="FND + KL from the hybrid"),
        Variant(
            "fnd+kd+cl-hybrid",
            _merge(fnd_kd, CL),
            uses_teacher=True,
            teacher=hybrid,
            note="FND + KL from the hybrid + contrastive",
        ),
        Variant("fnd+kd-ease", fnd_kd, uses_teacher=True, teacher="baseline:ease", note="FND + KL from EASE"),
        *(users_table_variants(alpha) if kind == "ids" else []),
    ]


# id data: a student whose item vectors are sums of user vectors (ModelConfig.id_table='users'): a
# [n_users, 128] table instead of the teacher's [n_items, 128] (DiFashion: 1/210 of its backbone)
USERS_TABLE = {"model": {"size": "teacher", "id_table": "users"}}


def users_table_variants(alpha: float) -> list[Variant]:
    """The users-table student, plain, distilled from the shared teacher (FND, KD, FND + KD) and with CL."""
    fnd = _merge(USERS_TABLE, _fnd(alpha))
    plain = Variant("student-u", USERS_TABLE, baseline=None, group="users", x="plain", note="users-table student")
    distilled = Variant(
        "fnd+kd-u",
        _merge(fnd, {"loss": {"kind": "fnd+kd"}}),
        uses_teacher=True,
        baseline="student-u",
        note="users table, FND + KL",
    )
    return [
        plain,
        Variant("kd-u", _merge(USERS_TABLE, {"loss": {"kind": "kd"}}), uses_teacher=True, baseline="student-u"),
        Variant("fnd-u", fnd, uses_teacher=True, baseline="student-u", note="users table, FND"),
        distilled,
        Variant("cl-u", _merge(USERS_TABLE, CL), baseline="student-u", note="users table + contrastive"),
        Variant(
            "fnd+kd+cl-u",
            _merge(fnd, {"loss": {"kind": "fnd+kd"}}, CL),
            uses_teacher=True,
            baseline="student-u",
            note="users table, FND + KL + contrastive",
        ),
        Variant(
            "student-u+cf", role="hybrid", mix_of=plain, baseline=None, note="users-table student + EASE + PureSVD"
        ),
        Variant(
            "fnd+kd-u+cf",
            role="hybrid",
            mix_of=distilled,
            baseline="student-u+cf",
            note="users-table FND + KL student + EASE + PureSVD",
        ),
    ]


# the whole-model students' longer schedule ("-long" variants): the teacher's epochs and patience at the full
# scale (configs/fmnist_teacher.yaml) and a higher learning rate. Measured on Fashion-MNIST (validation, seed 0,
# FND + CL): the 16-d students learn more slowly per epoch than the 64-d one (valid AUC 0.75-0.76 after 2
# epochs against 0.81) and were still improving at their 6th; whole-pma at lr 0.01 reached valid AUC
# 0.739 / 0.769 after epochs 1 / 2 against 0.695 / 0.752 at the students' 0.003.
LONG = {"optim": {"epochs": 12, "patience": 3, "lr": 0.01}}


def compress_variants(scale: str) -> list[Variant]:
    """Teacher, the backbone-only students and the whole-model students (SERVING_PRESETS), plain and distilled.

    Distilled = FND + contrastive learning, the best Fashion-MNIST recipe (configs/fmnist_student_distilled.yaml);
    "+cl" = the same contrastive term without a teacher, so the two parts of the recipe are told apart.
    One teacher per seed (as in `main_variants`): a distilled student of seed s learns from the teacher of seed s,
    so "within 0.005 of the teacher" is judged on 3-seed means of both. Each whole-model preset is trained on the
    student's schedule and on the teacher's longer one (LONG, full
    scale only: the quick and smoke scales keep theirs). Each distilled student is paired with the plain
    student of its preset and schedule (same seed, same negatives), and so is its CL-only twin; "@teacher+cl"
    distils the same recipe from the fair teacher (teacher + CL, as in `main_variants`), paired with the one
    taught by the paper's teacher.
    """
    distil = _merge(_fnd(DISTILL[scale]["alpha"]), CL)
    schedules = {"": {}, "-long": LONG} if scale == "full" else {"": {}}
    teacher = Variant(
        "teacher", role="teacher", baseline=None, group="teacher", per_seed=True, note="one teacher per seed"
    )
    teacher_cl = Variant(  # the fair teacher of main_variants (same runs): the teacher given the students' CL
        "teacher+cl", CL, role="teacher", baseline="teacher", group="teacher", per_seed=True, note="teacher + CL"
    )
    out = [
        teacher,
        teacher_cl,
        Variant("student", baseline=None, group="backbone", x="plain", note="backbone-only student (small CNN)"),
        Variant(
            "fnd+cl",
            distil,
            uses_teacher=True,
            teacher=teacher,
            group="backbone",
            x="fnd+cl",
            note="backbone-only, FND + CL",
        ),
    ]
    for preset, model in SERVING_PRESETS.items():
        shape = f"d={model['dim']}, {model['blocks']} SAB, user {model['user_dim']}, {model['serving_dtype']}"
        for suffix, schedule in schedules.items():
            name = preset + suffix
            whole = _merge({"model": model}, schedule)
            when = f", {schedule['optim']['epochs']} epochs" if schedule else ""
            out += [
                Variant(name, whole, baseline=None, group=name, x="plain", note=f"whole-model student ({shape}{when})"),
                Variant(
                    f"{name}+cl",
                    _merge(whole, CL),
                    baseline=name,
                    group=name,
                    x="cl",
                    note=f"whole-model student ({shape}{when}), CL (no teacher)",
                ),
                Variant(
                    f"{name}+fnd+cl",
                    _merge(whole, distil),
                    uses_teacher=True,
                    teacher=teacher,
                    baseline=name,
                    group=name,
                    x="fnd+cl",
                    note=f"whole-model student ({shape}{when}), FND + CL",
                ),
                Variant(
                    f"{name}+fnd+cl@teacher+cl",
                    _merge(whole, distil),
                    uses_teacher=True,
                    teacher=teacher_cl,
                    baseline=f"{name}+fnd+cl",
                    group=name,
                    x="fnd+cl@teacher+cl",
                    note=f"whole-model student ({shape}{when}), FND + CL from teacher+cl",
                ),
            ]
    return out


COLD_SHARE = 0.5  # the fraction of users made cold in the cold-user study


def cold_variants(scale: str, cold_dirs: dict[int, str]) -> list[Variant]:
    """Cold users (N training outfits each): teacher (trained on the cold split), plain, KD and FND students.

    Each cold split makes half of the users cold (COLD_SHARE) and keeps the
    others warm; its evaluation candidates are the cold users' only. A cold
    run keeps every training outfit of the split (no max_train subset).
    """
    alpha = DISTILL[scale]["alpha"]
    out = []
    for n, path in sorted(cold_dirs.items()):
        whole = {"data": {"max_train": None}}
        base = f"student-cold{n}"
        out += [
            Variant(f"teacher-cold{n}", role="teacher", data=path, baseline=base, group=f"cold{n}", x="teacher"),
            Variant(base, whole, data=path, baseline=None, group=f"cold{n}", x="student"),
            Variant(
                f"kd-cold{n}",
                _merge(whole, {"loss": {"kind": "kd"}}),
                uses_teacher=True,
                data=path,
                baseline=base,
                group=f"cold{n}",
                x="kd",
            ),
            Variant(
                f"fnd-cold{n}",
                _merge(whole, _fnd(alpha)),
                uses_teacher=True,
                data=path,
                baseline=base,
                group=f"cold{n}",
                x="fnd",
            ),
        ]
    return out


TRAINING_EXPERIMENTS = {
    "main": main_variants,
    "alpha": alpha_variants,
    "threshold": threshold_variants,
    "augment": augment_variants,
    "backbone": backbone_variants,
    "batch": batch_variants,
    "hard": hard_variants,
    "teachers": teachers_variants,
}


# the main comparison's claims, checked draw by draw (`outfitrec experiment main --compare OTHER_RESULTS`)
MAIN_CLAIMS = [
    Claim("FND + CL beats the plain student", "fnd+cl", "student"),
    Claim("FND + CL beats the plain student", "fnd+cl", "student", "true_share"),
    Claim("FND beats the plain student", "fnd", "student"),
    Claim("KD beats the plain student", "kd", "student"),
    Claim("CL beats the plain student", "cl", "student"),
    Claim("the distilled student is at least its teacher", "fnd+cl", "teacher", op=">="),
    Claim("the distilled student is at least its teacher", "fnd+cl", "teacher", "true_share", ">="),
    Claim("CL helps the teacher", "teacher+cl", "teacher"),
    Claim("CL helps the teacher", "teacher+cl", "teacher", "true_share"),
    Claim("the converged teacher beats the fixed-budget one", "teacher-es", "teacher"),
    Claim("distilled from teacher+cl, at least teacher+cl", "fnd+cl@teacher+cl", "teacher+cl", op=">="),
    Claim("distilled from teacher+cl, at least teacher+cl", "fnd+cl@teacher+cl", "teacher+cl", "true_share", ">="),
    Claim("a stronger teacher (teacher+cl) teaches better", "fnd+cl@teacher+cl", "fnd+cl"),
    Claim("a stronger teacher (teacher-es) teaches better", "fnd+cl@teacher-es", "fnd+cl"),
    Claim("the whole-model student (FND + CL) is at least its teacher", "whole-dot-long+fnd+cl", "teacher", op=">="),
    Claim(
        "the whole-model student (FND + CL) is at least its teacher",
        "whole-dot-long+fnd+cl",
        "teacher",
        "true_share",
        ">=",
    ),
    Claim(
        "the whole-model student from teacher+cl is at least teacher+cl",
        "whole-dot-long+fnd+cl@teacher+cl",
        "teacher+cl",
        "true_share",
        ">=",
    ),
    Claim("FND + CL beats the plain whole-model student", "whole-dot-long+fnd+cl", "whole-dot-long"),
    Claim("FND adds to CL in the whole-model student", "whole-dot-long+fnd+cl", "whole-dot-long+cl"),
    Claim("FND adds to CL in the whole-model student", "whole-dot-long+fnd+cl", "whole-dot-long+cl", "true_share"),
]
